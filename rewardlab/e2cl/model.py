"""The small sequence model E2CL trains from scratch: a Transformer encoder-decoder (the paper fine-tunes
Flan-T5-base, an encoder-decoder too; we train a ~1M-parameter one from random weights, a labelled
deviation, since nothing may be downloaded).

One model serves the three skills; the prompt's first token (``<plan>``, ``<feedback>``, ``<correct>``)
says which (§6 of ``shared/research/reward_design_algorithms.md``: "one LM, three skills").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# torch warns about two internals that do not apply here: the nested-tensor fast path (unused with
# pre-norm layers) and a boolean padding mask beside the float causal mask (equivalent masking)
warnings.filterwarnings("ignore", message="enable_nested_tensor is True", category=UserWarning)
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask", category=UserWarning)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of :class:`Seq2Seq`.

    :param d_model: width of embeddings and attention
    :param heads: attention heads
    :param layers: encoder layers
    :param decoder_layers: decoder layers (targets are a few tokens: one is enough)
    :param ff: width of the feed-forward blocks
    :param max_src: longest prompt in tokens (longer prompts keep their last ``max_src`` tokens)
    :param max_tgt: longest target in tokens, ``<eos>`` included
    :param dropout: dropout in attention and feed-forward blocks
    """

    d_model: int = 64
    heads: int = 4
    layers: int = 2
    decoder_layers: int = 1
    ff: int = 128
    max_src: int = 192
    max_tgt: int = 40
    dropout: float = 0.0


class Seq2Seq(nn.Module):
    """Encoder-decoder Transformer over token ids, with learned positions and tied output embeddings.

    :param vocab: vocabulary size
    :param pad: the padding id (masked in attention and in the loss)
    :param bos: the id that starts every decoded sequence
    """

    def __init__(self, vocab: int, pad: int, bos: int, eos: int, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config, self.pad, self.bos, self.eos = config, pad, bos, eos
        d = config.d_model
        self.embed = nn.Embedding(vocab, d, padding_idx=pad)
        self.src_pos = nn.Embedding(config.max_src, d)
        self.tgt_pos = nn.Embedding(config.max_tgt + 1, d)
        self.transformer = nn.Transformer(d, config.heads, config.layers, config.decoder_layers, config.ff,
                                          config.dropout, batch_first=True, norm_first=True)
        self.scale = math.sqrt(d)
        # embeddings shared with the output layer: std d^-1/2 keeps the initial logits O(1) (std 1 made
        # the first loss about 25 nats and slowed training several-fold, measured)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` (B, S) ids -> memory (B, S, d) and its padding mask (B, S)."""
        mask = src == self.pad
        pos = torch.arange(src.shape[1], device=src.device)
        memory = self.transformer.encoder(self.embed(src) * self.scale + self.src_pos(pos), src_key_padding_mask=mask)
        return memory, mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: ``tgt_in`` (B, T) ids starting with ``<bos>`` -> logits (B, T, V)."""
        T = tgt_in.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=tgt_in.device)
        pos = torch.arange(T, device=tgt_in.device)
        h = self.transformer.decoder(self.embed(tgt_in) * self.scale + self.tgt_pos(pos), memory, tgt_mask=causal,
                                     tgt_is_causal=True, tgt_key_padding_mask=tgt_in == self.pad,
                                     memory_key_padding_mask=memory_mask)
        return h @ self.embed.weight.T

    def loss(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``tgt`` (B, T) ids ending in ``<eos>`` given ``src`` (the paper's SFT loss)."""
        memory, mask = self.encode(src)
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], self.bos), tgt[:, :-1]], dim=1)
        logits = self.decode(tgt_in, memory, mask)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=self.pad)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None, allowed: torch.Tensor | None = None,
                 banned: Sequence[Sequence[int] | None] | None = None) -> list[list[int]]:
        """Decode each prompt of ``src`` (B, S): greedy when ``temperature`` is 0, else sampled.

        :param allowed: (B, V) bool, the tokens each prompt's output may use (None: all)
        :param banned: per prompt, one id sequence (without ``<eos>``) the output must not start with (None or
            empty: any): its last token is masked when the output so far is the rest of it

        :return: per prompt, the generated ids without ``<bos>`` and ``<eos>``
        """
        memory, mask = self.encode(src)
        B = src.shape[0]
        out = torch.full((B, 1), self.bos, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for _ in range(min(max_len, self.config.max_tgt)):
            logits = self.decode(out, memory, mask)[:, -1]
            logits[:, self.pad] = -math.inf
            if allowed is not None:
                logits = logits.masked_fill(~allowed, -math.inf)
            if banned is not None:  # the last token of a banned sequence is masked once the rest is decoded
                t = out.shape[1] - 1
                for b, seq in enumerate(banned):
                    if seq and t == len(seq) - 1 and out[b, 1:].tolist() == list(seq[:-1]):
                        logits[b, seq[-1]] = -math.inf
            if temperature > 0:
                nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        seqs = []
        for row in out[:, 1:].tolist():
            seqs.append([i for i in row[: row.index(self.eos)] if i != self.pad] if self.eos in row
                        else [i for i in row if i != self.pad])
        return seqs


def pad_batch(seqs: Sequence[Sequence[int]], pad: int, keep_last: int | None = None) -> torch.Tensor:
    """Right-pad id lists to one (B, L) tensor; ``keep_last`` truncates each from the left."""
    rows = [list(s[-keep_last:]) if keep_last else list(s) for s in seqs]
    width = max(1, max(len(r) for r in rows))
    arr = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
    return torch.from_numpy(arr)
