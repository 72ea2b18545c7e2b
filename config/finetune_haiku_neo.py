# Fine-tune EleutherAI's GPT-Neo on haiku with LoRA adapters, on one GPU (24 GB holds the 2.7B model this way):
#   python prepare/haiku.py                          # GPT-2 BPE bins of the embedded corpus (GPT-Neo reads GPT-2's BPE)
#   python train.py config/finetune_haiku_neo.py      # GPT-Neo 1.3B + LoRA adapters -> out-haiku-neo/
#   python train.py config/finetune_haiku_neo.py --init_from=EleutherAI/gpt-neo-2.7B --out_dir=out-haiku-neo-2.7b
#   python sample.py --out_dir=out-haiku-neo --haiku_report=True
# The checkpoints hold the adapters alone (50 MB for 1.3B at rank 16) and name their base, which sample.py and
# export.py load from the Hugging Face cache (the first run downloads 5 GB for 1.3B, 10 GB for 2.7B).

out_dir = "out-haiku-neo"
dataset = "haiku"
wandb_project = "haiku"
wandb_run_name = "gpt-neo-1.3b-haiku-lora"
init_from = "EleutherAI/gpt-neo-1.3B"
lora_rank = 16  # adapters on every block's attention and MLP projections; the rest frozen, held in bfloat16
lora_alpha = 32.0
lora_dropout = 0.05

# config/finetune_haiku.py's shape and schedule, with the larger learning rate that adapters (zero at first) take
block_size = 128
batch_size = 16
gradient_accumulation_steps = 2
max_iters = 30
eval_interval = 5
eval_iters = 20
always_save_checkpoint = False
learning_rate = 3e-4
warmup_iters = 5
lr_decay_iters = 30
min_lr = 3e-5
weight_decay = 0.0
