# OpenAI's GPT-2 large (774M) on OpenWebText: one eval, no training, no checkpoint (nanoGPT: val loss ~2.67):
#   python prepare/openwebtext.py && python train.py config/eval_gpt2_large.py
init_from = "gpt2-large"
out_dir = "out-eval-gpt2-large"
eval_only = True
eval_iters = 500  # x 8 x 1024 = 4M tokens per split, about the size of the val split
batch_size = 8
