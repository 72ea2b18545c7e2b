# OpenAI's GPT-2 medium (350M) on OpenWebText: one eval, no training, no checkpoint (nanoGPT: val loss ~2.84):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2_medium.py
init_from = "gpt2-medium"
out_dir = "out-eval-gpt2-medium"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
