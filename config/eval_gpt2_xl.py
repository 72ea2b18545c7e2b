# OpenAI's GPT-2 XL (1558M) on OpenWebText: one eval, no training, no checkpoint (nanoGPT: val loss ~2.54):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2_xl.py
init_from = "gpt2-xl"
out_dir = "out-eval-gpt2-xl"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
