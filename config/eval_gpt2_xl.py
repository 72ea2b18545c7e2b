# OpenAI's GPT-2 XL (1558M) evaluated on OpenWebText, no training (nanoGPT reports a val loss of about 2.54):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2_xl.py
# eval_only evaluates once and exits without writing a checkpoint.
init_from = "gpt2-xl"
dataset = "openwebtext"
out_dir = "out-eval-gpt2-xl"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
wandb_log = False
