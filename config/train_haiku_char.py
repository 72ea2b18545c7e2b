# The offline demo: a 0.8M-parameter character-level model trained from scratch on the embedded haiku corpus,
# in about 4 minutes on a two-core laptop CPU, no GPU and no download:
#   python prepare/haiku.py --tokenizer char      # -> data/haiku_char (75k characters of training text)
#   python train.py config/train_haiku_char.py
#   python sample.py --out_dir=out-haiku-char
# It reaches a val loss of ~1.58 nats per character and writes three-line haiku of mostly real words.

out_dir = "out-haiku-char"
dataset = "haiku_char"
wandb_project = "haiku"
wandb_run_name = "haiku-char"

# Four layers of 128 are what two cores train in minutes; wider or deeper models learn more per step but fewer
# steps fit the budget, and the corpus is small enough that this one already starts to overfit.
n_layer = 4
n_head = 4
n_embd = 128
# A haiku is ~75 characters: a 64-character window sees most of one, and steps are ~20% faster than with 128
# at the same val loss.
block_size = 64
batch_size = 64  # 4,096 characters per step
gradient_accumulation_steps = 1

# 1000 steps is ~55 passes over the corpus. Dropout 0.1 holds off overfitting (without it val loss turns up after
# ~600 steps; 0.2 learns too slowly for this budget), and a small model takes a high learning rate.
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
