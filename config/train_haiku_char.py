# The char-level version of the offline demo (config/train_haiku_bpe.py): a 0.8M-parameter model trained from scratch
# on the embedded haiku corpus, one id per character, in about 6 minutes on a two-core laptop CPU:
#   python prepare/haiku.py --tokenizer char      # -> data/haiku_char (192k characters of training text)
#   python train.py config/train_haiku_char.py
#   python sample.py --out_dir=out-haiku-char
# A window of 96 characters holds a whole haiku, so the model sees each poem from its first line to its last (and
# classify.py's season classifier starts from it: config/classify_haiku_seasons.py). It reaches a val loss of ~1.48
# nats per character; its free samples (--form=free) have three lines 74-84% of the time and 92-93% real words: it
# learns to spell more slowly than the BPE demo, whose tokens are mostly whole words.

out_dir = "out-haiku-char"
dataset = "haiku_char"
wandb_project = "haiku"
wandb_run_name = "haiku-char"

# Four layers of 128 are what two cores train in minutes; wider or deeper models learn more per step but fewer
# steps fit the budget.
n_layer = 4
n_head = 4
n_embd = 128
# A haiku is ~71 characters: a 64-character window sees most of one.
block_size = 96  # a whole haiku: 99% are under 85 characters
batch_size = 64  # 6,144 characters per step
gradient_accumulation_steps = 1

# 1000 steps is ~21 passes over the corpus; dropout 0.1 holds off overfitting, and a small model takes a high
# learning rate.
max_iters = 1000
learning_rate = 6e-3
warmup_iters = 50
lr_decay_iters = 1000
min_lr = 6e-4
beta2 = 0.99  # few tokens per step: average the second moment over more of them
dropout = 0.1

eval_interval = 200
eval_iters = 10
log_interval = 50
always_save_checkpoint = False  # ckpt.pt changes only when val loss improves (and at the end)
