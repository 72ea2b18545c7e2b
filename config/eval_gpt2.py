# OpenAI's GPT-2 (124M) on OpenWebText: one eval, no training, no checkpoint (nanoGPT: val loss ~3.12):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2.py
init_from = "gpt2"
out_dir = "out-eval-gpt2"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
