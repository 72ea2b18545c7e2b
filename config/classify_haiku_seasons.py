# Classify the embedded haiku by season, from config/train_haiku_char.py's language model (or from scratch, a control):
#   python prepare/haiku.py --tokenizer=char && python train.py config/train_haiku_char.py   # the language model
#   python prepare/labelled.py --tokenizer=char    # -> data/haiku_seasons_char: its vocabulary and its val haiku
#   python classify.py config/classify_haiku_seasons.py
#   python classify.py config/classify_haiku_seasons.py --init_from=scratch --out_dir=out-seasons-scratch   # control

out_dir = "out-seasons"
dataset = "haiku_seasons_char"
init_from = "out-haiku-char"
wandb_project = "haiku"
wandb_run_name = "haiku-seasons"

n_layer = 4  # the language model's shape, which a run from scratch takes
n_head = 4
n_embd = 128
block_size = 96
batch_size = 32
gradient_accumulation_steps = 1

max_iters = 1500
learning_rate = 5e-4  # from the language model, 1e-3 gave 0.45-0.46 val macro F1 (two seeds), 5e-4 0.51
warmup_iters = 30
lr_decay_iters = 1500
min_lr = 5e-5
beta2 = 0.99
dropout = 0.1
eval_interval = 250
eval_iters = 10
log_interval = 50
