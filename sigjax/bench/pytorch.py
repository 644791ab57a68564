"""The PyTorch side of the sigjax-vs-PyTorch benchmark: N small MLPs trained with plain SGD.

Every recipe runs the same workload from the same NumPy inputs, so its losses and gradient norms
can be compared number for number with sigjax (and with each other):

- N MLPs, layer l of model i computing z = a @ kernels[l][i] + biases[l][i] (the Flax layout),
  `activation` after every layer but the last, softmax cross-entropy (mean over the batch);
- at step s model i trains on x[batches[s, i]], y[batches[s, i]] with W <- W - lrs[i] * dL/dW;
- each step records, per model, the loss before the update and the Frobenius norm of each
  layer's weight gradient. The recording is part of the timed work; it stays in torch tensors
  until the timer stops.

Recipes (RECIPES):

- "loop": a Python loop over models, S eager steps each (autograd, in-place SGD).
- "func_vmap": per step one `torch.func.vmap` of `torch.func.grad_and_value` over all N models.
- "bmm_compile": stacked parameters, batched matmuls and a hand-written backward, the whole step
  under `torch.compile(dynamic=False)`; falls back to eager (and says so in `note`) when
  compilation fails on this machine.

torch is imported lazily: this module imports without it, and `available()` says why not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

RECIPES = ("loop", "func_vmap", "bmm_compile")
ACTIVATIONS = ("sigmoid", "tanh", "relu")


def available() -> str | None:
    """None when torch can be imported, else a one-line reason it cannot."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"PyTorch is not installed ({e}); pip install -e .[bench]"
    return None


def run(
    recipe: str,
    *,
    kernels: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    lrs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    batches: np.ndarray,
    activation: str = "sigmoid",
    threads: int | None = None,
) -> dict[str, Any]:
    """Train N MLPs with SGD in PyTorch by `recipe`; return the record and the timings.

    Args:
        recipe: one of RECIPES.
        kernels: L arrays, kernels[l] of shape (N, fan_in_l, fan_out_l), used as a @ W.
        biases: L arrays, biases[l] of shape (N, fan_out_l).
        lrs: (N,) per-model learning rate.
        x: (n, d) dataset, d == fan_in_0.
        y: (n,) integer class labels in [0, fan_out_{L-1}).
        batches: (S, N, B) integer indices into the dataset, one batch per step and model.
        activation: "sigmoid", "tanh" or "relu", applied after every layer but the last.
        threads: torch intra-op threads for this run (restored afterwards); None keeps the
            current setting.

    Returns:
        dict with "loss" (N, S) float32, the loss before each step's update; "grad_norm"
        (N, S, L) float32, the Frobenius norm of dL/dW_l; "wall_s" the timed training in
        seconds (warm-up excluded); "compile_s" the warm-up/compile time (0.0 for the eager
        recipes); "recipe"; "threads" (torch.get_num_threads() during the run); "note" ('' or
        why torch.compile fell back to eager).

    Raises:
        ValueError: unknown recipe or activation, or inconsistent shapes.
        ImportError: torch is not installed.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    _check_shapes(kernels, biases, lrs, x, y, batches)

    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        data = _Data(kernels, biases, lrs, x, y, batches)
        used_threads = torch.get_num_threads()
        if recipe == "loop":
            wall_s, compile_s, note = _run_loop(data, activation)
        elif recipe == "func_vmap":
            wall_s, compile_s, note = _run_func_vmap(data, activation)
        else:
            wall_s, compile_s, note = _run_bmm_compile(data, activation)
        # Buffers are (S, N[, L]): each step writes a contiguous row.
        loss = np.ascontiguousarray(data.loss_buf.numpy().T)
        grad_norm = np.ascontiguousarray(data.norm_buf.numpy().transpose(1, 0, 2))
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "loss": loss.astype(np.float32, copy=False),
        "grad_norm": grad_norm.astype(np.float32, copy=False),
        "wall_s": float(wall_s),
        "compile_s": float(compile_s),
        "recipe": recipe,
        "threads": int(used_threads),
        "note": note,
    }


def _check_shapes(
    kernels: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    lrs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    batches: np.ndarray,
) -> None:
    """Raise ValueError unless the inputs describe one consistent workload."""
    if len(kernels) == 0 or len(kernels) != len(biases):
        raise ValueError(
            f"need L >= 1 kernels and as many biases, got {len(kernels)}, {len(biases)}"
        )
    if np.ndim(x) != 2:
        raise ValueError(f"x must be (n, d), got shape {np.shape(x)}")
    n_models, fan_in = np.shape(kernels[0])[0], np.shape(x)[1]
    for l, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        ks, bs = np.shape(k), np.shape(b)
        if len(ks) != 3 or ks[0] != n_models or ks[1] != fan_in:
            raise ValueError(f"kernels[{l}] must be ({n_models}, {fan_in}, fan_out), got {ks}")
        if bs != (n_models, ks[2]):
            raise ValueError(f"biases[{l}] must be ({n_models}, {ks[2]}), got {bs}")
        fan_in = ks[2]
    if np.shape(lrs) != (n_models,):
        raise ValueError(f"lrs must be ({n_models},), got {np.shape(lrs)}")
    if np.shape(y) != (np.shape(x)[0],):
        raise ValueError(f"y must be ({np.shape(x)[0]},), got {np.shape(y)}")
    if np.ndim(batches) != 3 or np.shape(batches)[1] != n_models:
        raise ValueError(f"batches must be (S, {n_models}, B), got {np.shape(batches)}")


class _Data:
    """Inputs copied to torch once, before any timer starts, plus the record buffers.

    Parameters are stacked: ws[l] (N, in, out), bs[l] (N, out); the recipes update them in
    place (loop, func_vmap) or replace them (bmm_compile).
    """

    def __init__(
        self,
        kernels: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        lrs: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        batches: np.ndarray,
    ) -> None:
        import torch

        f32 = torch.float32
        self.ws = [torch.tensor(np.asarray(k), dtype=f32) for k in kernels]
        self.bs = [torch.tensor(np.asarray(b), dtype=f32) for b in biases]
        self.lrs = torch.tensor(np.asarray(lrs), dtype=f32)  # (N,)
        self.lrs_host = [float(v) for v in np.asarray(lrs, dtype=np.float32)]
        self.x = torch.tensor(np.asarray(x), dtype=f32)  # (n, d)
        self.y = torch.tensor(np.asarray(y), dtype=torch.int64)  # (n,)
        self.batches = torch.tensor(np.asarray(batches), dtype=torch.int64)  # (S, N, B)
        self.n_steps, self.n_models, self.batch = self.batches.shape
        self.n_layers = len(self.ws)
        self.loss_buf = torch.zeros(self.n_steps, self.n_models, dtype=f32)
        self.norm_buf = torch.zeros(self.n_steps, self.n_models, self.n_layers, dtype=f32)

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch for idx (N, B): inputs (N, B, d) and labels (N, B)."""
        flat = idx.reshape(-1)
        xb = self.x.index_select(0, flat).view(*idx.shape, self.x.shape[-1])
        return xb, self.y.index_select(0, flat).view(idx.shape)


def _act(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch

    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]


def _run_loop(data: _Data, activation: str) -> tuple[float, float, str]:
    """One model at a time, S eager autograd steps each; parameters are views into data.ws."""
    import torch
    import torch.nn.functional as F

    act = _act(activation)
    n_layers = data.n_layers

    def loss_of(params: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        a = data.x.index_select(0, idx)
        for l in range(n_layers):
            a = torch.addmm(params[2 * l + 1], a, params[2 * l])
            if l < n_layers - 1:
                a = act(a)
        return F.cross_entropy(a, data.y.index_select(0, idx))

    def model_params(i: int) -> list[torch.Tensor]:
        # Leaf views sharing storage with the stacked parameters: in-place SGD updates them.
        out = []
        for w, b in zip(data.ws, data.bs, strict=True):
            out += [w[i].detach().requires_grad_(), b[i].detach().requires_grad_()]
        return out

    # Warm-up (untimed, no update): one forward/backward of model 0 at step 0.
    warm = model_params(0)
    torch.autograd.grad(loss_of(warm, data.batches[0, 0]), warm)

    t0 = time.perf_counter()
    for i in range(data.n_models):
        params = model_params(i)
        lr = data.lrs_host[i]
        for s in range(data.n_steps):
            loss = loss_of(params, data.batches[s, i])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                data.loss_buf[s, i] = loss
                data.norm_buf[s, i] = torch.stack(
                    [torch.linalg.vector_norm(g) for g in grads[0::2]]
                )
                for p, g in zip(params, grads, strict=True):
                    p.sub_(g, alpha=lr)
    wall_s = time.perf_counter() - t0
    return wall_s, 0.0, ""


def _run_func_vmap(data: _Data, activation: str) -> tuple[float, float, str]:
    """Per step, one vmap over models of grad_and_value of a single-model functional loss."""
    import torch
    import torch.nn.functional as F
    from torch.func import grad_and_value, vmap

    act = _act(activation)
    n_layers = data.n_layers

    def loss_one(
        ws: tuple[torch.Tensor, ...],
        bs: tuple[torch.Tensor, ...],
        xb: torch.Tensor,
        yb: torch.Tensor,
    ) -> torch.Tensor:
        """Loss of one model: ws[l] (in, out), bs[l] (out,), xb (B, d), yb (B,)."""
        a = xb
        for l in range(n_layers):
            a = torch.addmm(bs[l], a, ws[l])
            if l < n_layers - 1:
                a = act(a)
        return F.cross_entropy(a, yb)

    batched = vmap(grad_and_value(loss_one, argnums=(0, 1)))
    lr_w = data.lrs.view(-1, 1, 1)
    lr_b = data.lrs.view(-1, 1)

    with torch.no_grad():  # grad() inside ignores the outer no_grad, as documented
        # Warm-up (untimed, no update).
        batched(tuple(data.ws), tuple(data.bs), *data.gather(data.batches[0]))

        t0 = time.perf_counter()
        for s in range(data.n_steps):
            xb, yb = data.gather(data.batches[s])
            (gws, gbs), loss = batched(tuple(data.ws), tuple(data.bs), xb, yb)
            data.loss_buf[s] = loss
            data.norm_buf[s] = torch.stack(
                [torch.linalg.vector_norm(g, dim=(1, 2)) for g in gws], dim=1
            )
            for w, gw in zip(data.ws, gws, strict=True):
                w.sub_(lr_w * gw)
            for b, gb in zip(data.bs, gbs, strict=True):
                b.sub_(lr_b * gb)
        wall_s = time.perf_counter() - t0
    return wall_s, 0.0, ""


def _make_bmm_step(
    activation: str, lrs: torch.Tensor
) -> Callable[..., tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]]:
    """The functional batched step: (ws, bs, x, y, idx) -> (new ws, new bs, loss, norms).

    ws[l] (N, in, out), bs[l] (N, out), x (n, d), y (n,), idx (N, B) the step's batch
    indices; loss (N,) before the update, norms (N, L) of dL/dW_l. Backward by hand.
    """
    import torch

    act = _act(activation)
    lr_w = lrs.view(-1, 1, 1)
    lr_b = lrs.view(-1, 1)

    def dact(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Derivative of the activation at pre-activation z with output a."""
        if activation == "sigmoid":
            return a * (1.0 - a)
        if activation == "tanh":
            return 1.0 - a * a
        return (z > 0).to(a.dtype)

    def step(
        ws: list[torch.Tensor],
        bs: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        n_layers = len(ws)
        flat = idx.reshape(-1)
        xb = x.index_select(0, flat).view(*idx.shape, x.shape[-1])  # (N, B, d)
        yb = y.index_select(0, flat).view(idx.shape)  # (N, B)
        inputs = [xb]  # inputs[l]: the input of layer l, (N, B, in)
        pre = []  # pre[l]: pre-activation of hidden layer l
        a = xb
        for l in range(n_layers):
            z = torch.baddbmm(bs[l].unsqueeze(1), a, ws[l])
            if l < n_layers - 1:
                pre.append(z)
                a = act(z)
                inputs.append(a)
            else:
                a = z
        logp = torch.log_softmax(a, dim=-1)  # (N, B, C)
        loss = -logp.gather(-1, yb.unsqueeze(-1)).squeeze(-1).mean(dim=1)  # (N,)
        onehot = torch.nn.functional.one_hot(yb, a.shape[-1]).to(logp.dtype)
        dz = (logp.exp() - onehot) / yb.shape[1]  # dL/dlogits
        new_ws: list[torch.Tensor] = [ws[0]] * n_layers
        new_bs: list[torch.Tensor] = [bs[0]] * n_layers
        norms = []
        for l in range(n_layers - 1, -1, -1):
            gw = torch.bmm(inputs[l].transpose(1, 2), dz)
            gb = dz.sum(dim=1)
            if l > 0:
                dz = torch.bmm(dz, ws[l].transpose(1, 2)) * dact(pre[l - 1], inputs[l])
            norms.append(torch.linalg.vector_norm(gw, dim=(1, 2)))
            new_ws[l] = ws[l] - lr_w * gw
            new_bs[l] = bs[l] - lr_b * gb
        return new_ws, new_bs, loss, torch.stack(norms[::-1], dim=1)

    return step


def _run_bmm_compile(data: _Data, activation: str) -> tuple[float, float, str]:
    """Hand-batched step under torch.compile; warm-up (compile) on the initial parameters."""
    import torch

    eager = _make_bmm_step(activation, data.lrs)
    step = eager
    note = ""
    compile_s = 0.0
    with torch.no_grad():
        t0 = time.perf_counter()
        try:
            import torch._dynamo

            # Fresh dynamo state per run, so repeated runs in one process cannot exhaust the
            # recompile limit (past which dynamo silently runs eager). Inductor's on-disk and
            # in-process caches survive this: a repeated shape compiles much faster.
            torch._dynamo.reset()
            compiled = torch.compile(eager, dynamic=False)
            # The step is functional, so warming up on the initial parameters leaves them as
            # given. Two chained calls: the second sees compiled outputs as inputs, so any
            # recompile that causes happens here, not in the timed loop.
            ws, bs, _, _ = compiled(data.ws, data.bs, data.x, data.y, data.batches[0])
            compiled(ws, bs, data.x, data.y, data.batches[min(1, data.n_steps - 1)])
        except (RuntimeError, OSError, ImportError) as e:  # dynamo/inductor/C++ toolchain
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            note = f"torch.compile failed ({type(e).__name__}: {first[:200]}); ran eager"
            # Eager warm-up, so the timed run excludes first-call costs as for the others.
            eager(data.ws, data.bs, data.x, data.y, data.batches[0])
        else:
            step = compiled
            compile_s = time.perf_counter() - t0

        ws, bs = list(data.ws), list(data.bs)
        t0 = time.perf_counter()
        for s in range(data.n_steps):
            ws, bs, loss, norms = step(ws, bs, data.x, data.y, data.batches[s])
            data.loss_buf[s] = loss
            data.norm_buf[s] = norms
        wall_s = time.perf_counter() - t0
    data.ws, data.bs = ws, bs
    return wall_s, compile_s, note
