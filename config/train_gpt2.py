# GPT-2 (124M) from scratch on OpenWebText: ~9B tokens, as in nanoGPT. One node of 8 A100 40GB or H100 GPUs:
#   python prepare/openwebtext.py
#   torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
# nanoGPT reports a val loss of about 2.85 after ~300B tokens (600k steps); OpenAI's GPT-2 124M scores 3.12 here.

wandb_log = True
wandb_project = "owt"
wandb_run_name = "gpt2-124M"
out_dir = "out-gpt2"

# 12 sequences x 1024 tokens x 40 micro-steps (5 per GPU on 8 GPUs) = 491,520 tokens per step, GPT-2's ~0.5M
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

max_iters = 600000  # x 0.5M tokens = ~300B tokens
lr_decay_iters = 600000
warmup_iters = 2000
eval_interval = 1000
eval_iters = 200
log_interval = 10
weight_decay = 1e-1
