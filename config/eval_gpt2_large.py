# OpenAI's GPT-2 large (774M) evaluated on OpenWebText, no training (nanoGPT reports a val loss of about 2.67):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2_large.py
# eval_only evaluates once and exits without writing a checkpoint.
init_from = "gpt2-large"
dataset = "openwebtext"
out_dir = "out-eval-gpt2-large"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
wandb_log = False
