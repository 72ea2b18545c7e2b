# GPT-2 (124M) from scratch on OpenWebText: ~9B tokens, as in nanoGPT. One node of 8 A100 40GB or H100 GPUs:
#   python prepare/openwebtext.py
#   torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
# nanoGPT reports a val loss of about 2.85 after ~300B tokens (600k steps); OpenAI's GPT-2 124M scores 3.12 here.
# The rest is train.py's defaults, which are this run's (as nanoGPT's are): 12 sequences x 1024 tokens x 40 micro-steps
# (5 per GPU on 8 GPUs) = 491,520 tokens per step, GPT-2's ~0.5M, for 600k steps (~300B tokens), weight decay 0.1.

wandb_log = True
wandb_run_name = "gpt2-124M"
out_dir = "out-gpt2"
eval_interval = 1000
log_interval = 10
