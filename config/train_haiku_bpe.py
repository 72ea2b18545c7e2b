# The offline demo: a small GPT trained from scratch on the embedded haiku corpus, with a 5,120-token BPE learnt from
# the corpus, in under two minutes on a two-core laptop CPU, no GPU and no download:
#   python prepare/haiku.py --tokenizer=bpe       # -> data/haiku_bpe (2,681 training haiku, ~51k tokens)
#   python train.py config/train_haiku_bpe.py
#   python sample.py --out_dir=out-haiku-bpe     # haiku by the form's rules, by construction (haikugpt/haiku/form.py)
#   python sample.py --out_dir=out-haiku-bpe --form=free --num_samples=100 --haiku_report=True   # the model alone

out_dir = "out-haiku-bpe"
dataset = "haiku_bpe"
wandb_project = "haiku"
wandb_run_name = "haiku-bpe"

n_layer = 4  # four layers of 128 (0.8M parameters, and 0.65M in the token table): what two cores train in minutes
n_head = 4
n_embd = 128
block_size = 64  # a haiku is ~20 tokens: a window holds about three, so the model sees where poems start and stop
batch_size = 48  # 3,072 tokens per step
gradient_accumulation_steps = 1

# Chosen by held-out loss and the haiku report together (README): 400 steps (~23 passes) end at the lowest val loss
# (2.18 bits per byte) and copy no training line; 1200 steps memorised the 51k tokens (2.62 bits per byte, 8% of free
# lines copied, 12% with the form's rules) for better-formed free samples (93% three lines, 70% here).
max_iters = 400
learning_rate = 6e-3  # a small model takes a high learning rate
warmup_iters = 50
lr_decay_iters = 400
min_lr = 6e-4
beta2 = 0.99  # few tokens per step: average the second moment over more of them
dropout = 0.2
eval_interval = 50  # the val loss is flat from step 350 on: best.pt is one of the last two evals
eval_iters = 10
log_interval = 50
