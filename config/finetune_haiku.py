# Fine-tune OpenAI's GPT-2 medium on haiku, on one GPU with 16 GB or more:
#   python prepare/haiku.py                      # GPT-2 BPE bins of the embedded corpus -> data/haiku
#   python train.py config/finetune_haiku.py
#   python sample.py --out_dir=out-haiku/best.pt --haiku_report=True
# ~120k tokens: seconds of GPU time after the download (1.5 GB) and compile. With a real corpus (prepare/haiku.py
# --input FILE: ~100k haiku, ~2.5M tokens) raise max_iters and lr_decay_iters to ~2000, eval_interval to 100: ~3 passes.

out_dir = "out-haiku"
dataset = "haiku"
wandb_project = "haiku"
wandb_run_name = "gpt2-medium-haiku"
init_from = "gpt2-medium"  # better English than 124M; its weights, gradients and AdamW state (~6 GB) fit 16 GB

block_size = 128  # a haiku is ~20 tokens: a window holds several, each ended by <|endoftext|>, so the model learns
batch_size = 16  # where a poem starts and stops, at an eighth of the cost of GPT-2's 1024 context
gradient_accumulation_steps = 2  # 16 x 128 x 2 = 4,096 tokens per step, ~1/12 of the embedded corpus

max_iters = 30  # ~2.5 passes, in which ~50k tokens are memorised: eval often, keep the checkpoint of best val loss
eval_interval = 5
eval_iters = 20
always_save_checkpoint = False
learning_rate = 5e-5  # small, to move the pretrained weights gently
warmup_iters = 5
lr_decay_iters = 30
min_lr = 5e-6
dropout = 0.1  # GPT-2's own, which guards against memorising so little data
