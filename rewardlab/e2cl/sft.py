"""Supervised fine-tuning of the sequence model on E2CL records: one cross-entropy objective over the
three skills' examples (the paper: a single SFT run on planning + feedback + correction data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from rewardlab.e2cl.agents import record_prompt
from rewardlab.e2cl.datasets import Record
from rewardlab.e2cl.model import Seq2Seq, pad_batch
from rewardlab.e2cl.tokenizer import Tokenizer


def fit(model: Seq2Seq, tok: Tokenizer, records: Sequence[Record], epochs: int, lr: float, batch_size: int,
        seed: int, progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Train ``model`` on ``records`` with Adam (the paper's optimiser; lr 1e-4 for Flan-T5, larger here
    since the model starts from random weights).

    Batches group examples of similar prompt length (less padding, several times faster on CPU); their
    order is shuffled every epoch with a generator seeded by ``seed``.

    :return: the mean loss of each epoch
    """
    if not records:
        return []
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    src = [tok.encode(record_prompt(r))[-model.config.max_src:] for r in records]
    tgt = [(tok.encode(r.target) + [tok.eos])[: model.config.max_tgt] for r in records]
    order = np.argsort([len(s) for s in src], kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            loss = model.loss(pad_batch([src[i] for i in idx], tok.pad), pad_batch([tgt[i] for i in idx], tok.pad))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(records))
        if progress is not None:
            progress(epoch + 1, epochs)
    model.eval()
    return losses
