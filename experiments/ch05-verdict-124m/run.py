"""The book's chapter 5 pretraining run, reproduced with llm_zero.

GPT-2 124M (context 256) on The Verdict, 90/10 split, AdamW (lr 4e-4, weight decay 0.1), batch 2,
10 epochs, evaluation every 5 steps on 5 batches, torch.manual_seed(123). Writes into this folder:
config.yaml, metrics.json (everything), metrics.jsonl (one line per evaluation), loss.png,
samples.txt, and checkpoints/ (weights in safetensors plus optimizer state; git-ignored).

    nice -n 10 python experiments/ch05-verdict-124m/run.py

One thread keeps it from crowding out other work on a shared machine: about half an hour on a
2-core CPU.
"""
import io
import json
import platform
import sys
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import tiktoken
import torch
import yaml
from safetensors.torch import save_model

from llm_zero.data.corpora import load_text
from llm_zero.data.dataset import create_dataloader_v1
from llm_zero.model.generation import generate
from llm_zero.model.gpt import GPT_CONFIG_124M, GPTModel
from llm_zero.train.pretrain import (calc_loss_loader, plot_losses, text_to_token_ids, token_ids_to_text,
                                     train_model_simple)

OUT = Path(__file__).resolve().parent
CONFIG = {
    "model": {**GPT_CONFIG_124M, "context_length": 256},
    "data": {"corpus": "the-verdict", "train_ratio": 0.90, "batch_size": 2, "max_length": 256, "stride": 256},
    "optimizer": {"name": "AdamW", "lr": 4e-4, "weight_decay": 0.1},
    "train": {"seed": 123, "num_epochs": 10, "eval_freq": 5, "eval_iter": 5,
              "start_context": "Every effort moves you", "threads": 1},
    "sample": {"seed": 123, "max_new_tokens": 15, "top_k": 25, "temperature": 1.4},
}


class Tee(io.TextIOBase):
    "Write to the terminal and keep a copy, so the loop's printed samples can be saved."
    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, s):
        self.stream.write(s); self.stream.flush()
        return self.copy.write(s)


def main():
    cfg = CONFIG
    torch.set_num_threads(cfg["train"]["threads"])
    (OUT / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    tokenizer = tiktoken.get_encoding("gpt2")
    text = load_text(cfg["data"]["corpus"])
    split = int(cfg["data"]["train_ratio"] * len(text))
    d = cfg["data"]

    # Same order of seeded operations as the book: seed, loaders, model, optimizer.
    torch.manual_seed(cfg["train"]["seed"])
    train_loader = create_dataloader_v1(text[:split], batch_size=d["batch_size"], max_length=d["max_length"],
                                        stride=d["stride"], drop_last=True, shuffle=True)
    val_loader = create_dataloader_v1(text[split:], batch_size=d["batch_size"], max_length=d["max_length"],
                                      stride=d["stride"], drop_last=False, shuffle=False)
    torch.manual_seed(cfg["train"]["seed"])
    model = GPTModel(cfg["model"])
    # The book measures the untrained model first, then re-seeds and re-creates it for training; the
    # training loop's dropout and shuffling draw from the global RNG, so that order is kept.
    with torch.no_grad():
        model.eval()
        initial = {"train_loss": calc_loss_loader(train_loader, model, "cpu"),
                   "val_loss": calc_loss_loader(val_loader, model, "cpu")}
        model.train()
    print(f"Untrained: train loss {initial['train_loss']:.5f}, val loss {initial['val_loss']:.5f}")

    torch.manual_seed(cfg["train"]["seed"])
    model = GPTModel(cfg["model"])
    optimizer = torch.optim.AdamW(model.parameters(), **{k: v for k, v in cfg["optimizer"].items() if k != "name"})
    t = cfg["train"]
    tee = Tee(sys.stdout)
    sys.stdout = tee
    start = time.perf_counter()
    try:
        train_losses, val_losses, tokens_seen = train_model_simple(
            model, train_loader, val_loader, optimizer, "cpu", num_epochs=t["num_epochs"],
            eval_freq=t["eval_freq"], eval_iter=t["eval_iter"], start_context=t["start_context"],
            tokenizer=tokenizer)
    finally:
        sys.stdout = tee.stream
    seconds = time.perf_counter() - start

    s = cfg["sample"]
    torch.manual_seed(s["seed"])
    model.eval()
    sampled = generate(model, text_to_token_ids(t["start_context"], tokenizer), max_new_tokens=s["max_new_tokens"],
                       context_size=cfg["model"]["context_length"], top_k=s["top_k"], temperature=s["temperature"])
    sampled_text = token_ids_to_text(sampled, tokenizer)
    print("Sampled:", sampled_text)

    steps = [i * t["eval_freq"] for i in range(len(train_losses))]
    epochs = [(step + 1) / len(train_loader) for step in steps]
    metrics = {"initial": initial, "steps": steps, "epochs": epochs, "tokens_seen": tokens_seen,
               "train_losses": train_losses, "val_losses": val_losses, "seconds": seconds,
               "batches_per_epoch": len(train_loader), "torch": torch.__version__,
               "machine": platform.processor() or platform.machine()}
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(OUT / "metrics.jsonl", "w") as f:
        for row in zip(steps, epochs, tokens_seen, train_losses, val_losses):
            f.write(json.dumps(dict(zip(["step", "epoch", "tokens_seen", "train_loss", "val_loss"], row))) + "\n")
    plot_losses(epochs, tokens_seen, train_losses, val_losses).savefig(OUT / "loss.png", dpi=120)

    epoch_samples = [line for line in tee.copy.getvalue().splitlines() if not line.startswith("Ep ")]
    (OUT / "samples.txt").write_text(
        "Greedy continuation of the start context after each epoch:\n"
        + "\n".join(f"{i + 1:2d}: {line}" for i, line in enumerate(epoch_samples))
        + f"\n\nAfter training, top_k={s['top_k']}, temperature={s['temperature']}, seed {s['seed']}:\n"
        + sampled_text.replace("\n", " ") + "\n")

    ckpt = OUT / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    save_model(model, ckpt / "model.safetensors")
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    print(f"Done in {seconds / 60:.1f} min; final train loss {train_losses[-1]:.3f}, val loss {val_losses[-1]:.3f}")


if __name__ == "__main__":
    main()
