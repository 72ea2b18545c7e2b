# The char-level version of the offline demo (config/train_haiku_bpe.py): a 0.8M-parameter model trained from scratch
# on the embedded haiku corpus, one id per character, in about 6 minutes on a two-core laptop CPU:
#   python prepare/haiku.py --tokenizer char      # -> data/haiku_char (192k characters of training text)
#   python train.py config/train_haiku_char.py
#   python sample.py --out_dir=out-haiku-char
# Its val loss reaches ~1.48 nats per character; it learns to spell more slowly than the BPE demo, whose tokens are
# mostly whole words. config/classify_haiku_seasons.py starts from it.

out_dir = "out-haiku-char"
dataset = "haiku_char"
wandb_project = "haiku"
wandb_run_name = "haiku-char"

n_layer = 4  # four layers of 128: what two cores train in minutes
n_head = 4
n_embd = 128
block_size = 96  # a whole haiku, from its first line to its last: 99% are under 85 characters
batch_size = 64  # 6,144 characters per step
gradient_accumulation_steps = 1

max_iters = 1000  # ~21 passes; dropout 0.1 holds off overfitting
learning_rate = 6e-3  # a small model takes a high learning rate
warmup_iters = 50
lr_decay_iters = 1000
min_lr = 6e-4
beta2 = 0.99  # few tokens per step: average the second moment over more of them
dropout = 0.1
eval_interval = 200
eval_iters = 10
log_interval = 50
always_save_checkpoint = False  # ckpt.pt changes only when val loss improves (and at the end)
