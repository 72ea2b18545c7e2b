# The offline demo: a small GPT trained from scratch on the embedded haiku corpus, with a 5,120-token BPE learnt from
# the corpus, in about four minutes on a two-core laptop CPU, no GPU and no download:
#   python prepare/haiku.py --tokenizer=bpe       # -> data/haiku_bpe (2,681 training haiku, ~51k tokens)
#   python train.py config/train_haiku_bpe.py
#   python sample.py --out_dir=out-haiku-bpe     # 5-7-5 haiku of real words, by construction (form.py)
#   python sample.py --out_dir=out-haiku-bpe --form=free --num_samples=100 --haiku_report=True   # the model alone

out_dir = "out-haiku-bpe"
dataset = "haiku_bpe"
wandb_project = "haiku"
wandb_run_name = "haiku-bpe"

# Four layers of 128 (0.8M parameters, and 0.65M in the token table) are what two cores train in minutes.
n_layer = 4
n_head = 4
n_embd = 128
# A haiku is ~20 tokens of this BPE (a token is a word or a piece of one): a 64-token window holds about three, each
# ended by end-of-text, so the model sees where poems and lines start and stop.
block_size = 64
batch_size = 48  # 3,072 tokens per step
gradient_accumulation_steps = 1

# 1200 steps is ~70 passes over the corpus, and the model memorises: its val loss is lowest near step 200 (5.42 nats
# per token) and rises after it, while its samples keep getting better formed (more of them three lines of real
# words) without copying the training haiku. So this run evaluates once, at the end, and keeps the last model;
# dropout 0.2 slows the memorising. A small model takes a high learning rate.
max_iters = 1200
learning_rate = 6e-3
warmup_iters = 50
lr_decay_iters = 1200
min_lr = 6e-4
beta2 = 0.99  # few tokens per step: average the second moment over more of them
dropout = 0.2

eval_interval = 1200
eval_iters = 10
log_interval = 50
