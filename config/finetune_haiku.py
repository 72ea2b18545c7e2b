# Fine-tune OpenAI's GPT-2 medium on haiku, on one GPU with 16 GB or more:
#   python prepare/haiku.py                      # GPT-2 BPE bins of the embedded corpus -> data/haiku
#   python train.py config/finetune_haiku.py
#   python sample.py --out_dir=out-haiku/best.pt --haiku_report=True
# The run is ~120k tokens, seconds of GPU time; downloading the weights (1.5 GB) and compiling take longer.
# The embedded corpus is ~3,000 haiku, ~55k GPT-2 tokens (estimated from its 49k pre-tokens). With a real one
# (prepare/haiku.py --input FILE, ~100k haiku, ~2.5M tokens) keep the rest but raise max_iters and lr_decay_iters to
# ~2000 and eval_interval to 100: ~3 passes.

out_dir = "out-haiku"
dataset = "haiku"
wandb_project = "haiku"
wandb_run_name = "gpt2-medium-haiku"

# GPT-2 medium (350M) writes noticeably better English than the 124M model, and with AdamW it needs ~6 GB for
# weights, gradients and optimizer state, so it fits a 16 GB GPU; large (774M) needs ~12 GB of state plus
# activations (a 24 GB GPU), xl (1.5B) ~25 GB (a 40 GB one).
init_from = "gpt2-medium"

# A haiku is ~20 tokens, so a 128-token window holds several, each ended by <|endoftext|>: the model learns where a
# poem starts and stops, and steps cost an eighth of GPT-2's 1024 context.
block_size = 128
batch_size = 16
gradient_accumulation_steps = 2  # 16 x 128 x 2 = 4,096 tokens per step, ~1/12 of the embedded corpus

# ~50k training tokens are memorised within a few passes: 30 steps is ~2.5 passes. Eval every 5 steps and keep the
# checkpoint with the best val loss rather than the last one.
max_iters = 30
eval_interval = 5
eval_iters = 20
log_interval = 1
always_save_checkpoint = False

# A small learning rate moves the pretrained weights gently, warmed up over a few steps and decayed to a tenth;
# GPT-2's own dropout of 0.1 guards against memorising so little data.
learning_rate = 5e-5
warmup_iters = 5
lr_decay_iters = 30
min_lr = 5e-6
dropout = 0.1
weight_decay = 0.1
