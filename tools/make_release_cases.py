#!/usr/bin/env python3
"""Release-width reference cases for `deno task golden` (issue 18, part 4).

What it makes
-------------
Two case directories in exactly the format of `../shared/fixtures/tiny/mmdit_tiny` and
`../shared/fixtures/tiny/dc_ae_tiny` (case.json + weights.safetensors + tensors.safetensors, all
float32), with the real models' widths and random weights (the fixtures README's init rule: norm
weights / RMSNorm scales U(0.75, 1.25), norm and other biases U(-0.2, 0.2), weights of >= 2 dims
U(-a, a) with a = sqrt(3 / fan_in), fan_in = numel / out_channels):

* `mmdit_release_1x1/`: MMDiT with the HCAE arguments of
  `../shared/fixtures/manifests/mmdit_hcae.json` (hidden 3072, 24 heads, MLP ratio 4, T5 4096 /
  CLIP 768 inputs, 128 latent channels, patch 1, fused_qkv False, use_liger_rope True,
  cond_embed True) but depth 1 + depth_single_blocks 1 (536,110,976 parameters, 2.1 GB);
  batch 1, latent 128 x (1, 4, 4) -> 16 image tokens, 8 text tokens, i2v-style `cond`.
  Stored: the inputs, every `inter.*` of the tiny case, `out`, and `target` / `grad.*`.
* `mmdit_release_1x1_grads/` (only with `--grads`): the same case plus `grads.safetensors`
  (MSE loss against `target`, gradients of every parameter and of img/txt/y_vec/cond), so that
  golden also runs the backward; weights/tensors are symlinks into `mmdit_release_1x1/`.
* `dc_ae_release/`: the full Video DC-AE `dc-ae-f32t4c128` (config and parameter list of
  `../shared/fixtures/manifests/dc_ae_f32t4c128.json`, 459,462,147 parameters, 1.8 GB);
  `latent = encode(video)`, `decoded = decode(latent)` for a video of 8 frames x 32 x 32 (latent
  (1, 128, 2, 1, 1): the smallest input that also exercises the temporal up-sampling paths; 4
  frames would give a 1-frame latent that decodes to 1 frame), and the T = 1 image calls
  `image_latent = encode(image)`, `image_decoded = decode(image_latent)`; with the same `inter.*`
  intermediates as `dc_ae_tiny` plus `enc.project_in`, `enc.stages.0`, `dec.stages.1/0`.

Each case.json has `float64_rerun_max_abs_diff` for every stored result (outputs and `inter.*`):
the same weights and inputs rerun in float64, and `float32_within_tol_of_float64` (whether
PyTorch's own float32 result passes 1e-4 abs + 1e-4 rel against float64). Next to each case a
variant `<case>_f64ref/` (weights symlinked) stores the float64 results rounded to float32, so
`deno task golden <case>_f64ref` measures Kino's error against float64 rather than float32 PyTorch.

The PyTorch code below is a port of the reference classes (opensora/models/mmdit/**,
opensora/models/dc_ae/**) written from `../shared/spec/mmdit.md`, `../shared/spec/dc-ae.md` and
the fixtures README; `--verify-tiny` checks it against the stored tiny cases first (outputs,
intermediates and, for mmdit_tiny, the loss and every gradient).

How to run (Debian's torch 1.13: `apt-get install -y python3-torch`, then the system interpreter
/usr/bin/python3; on 2 cores: mmdit about 4 min and 8.6 GB RAM peak, dc_ae about 9 min and 6.5 GB)
---------------------------------------------------------------------------------------------
    /usr/bin/python3 tools/make_release_cases.py --verify-tiny        # port vs the tiny fixtures
    /usr/bin/python3 tools/make_release_cases.py                      # both -> /tmp/kino-release-cases
    /usr/bin/python3 tools/make_release_cases.py --only mmdit --grads # + mmdit_release_1x1_grads
    /usr/bin/python3 tools/make_release_cases.py --f64-ref DIR        # redo only the float64 part
    deno task golden /tmp/kino-release-cases/mmdit_release_1x1        # also *_f64ref, *_grads
    deno task golden /tmp/kino-release-cases/dc_ae_release

Where it writes: `--out` (default /tmp/kino-release-cases). The cases are about 2 GB each: never
write them into the repository or ../shared.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
FIXTURES = os.path.join(SHARED, "fixtures")


# ------------------------------------------------------------------------------------------------
# safetensors (F32 only), streaming writes


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32) if e > b else torch.zeros(0)
        out[k] = t.reshape(v["shape"])
    return out


def write_safetensors(path, tensors):
    """tensors: ordered dict name -> float32 tensor (written C-contiguous, little-endian)."""
    header, off = {}, 0
    for k, t in tensors.items():
        n = t.numel() * 4
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    os.replace(tmp, path)


def stats(t):
    t = t.detach().double()
    return {"min": t.min().item(), "max": t.max().item(), "mean": t.mean().item(),
            "std": t.std().item() if t.numel() > 1 else 0.0}


# ------------------------------------------------------------------------------------------------
# random weights (fixtures README rule)


def is_norm_weight(name, shape):
    return len(shape) == 1 and (name.endswith(".weight") or name.endswith(".scale"))


def init_weights(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        if is_norm_weight(name, shape):
            lo, hi = 0.75, 1.25
        elif len(shape) == 1:
            lo, hi = -0.2, 0.2
        else:
            a = math.sqrt(3.0 / (n // shape[0]))
            lo, hi = -a, a
        out[name] = torch.empty(shape, dtype=torch.float32).uniform_(lo, hi, generator=g)
    return out


# ------------------------------------------------------------------------------------------------
# MMDiT (opensora/models/mmdit: model.py, layers.py, math.py), fused_qkv False or True,
# use_liger_rope True (rotate-half) or False (Flux interleaved); guidance_embed False


def timestep_embedding(t, dim=256, max_period=10000, time_factor=1000.0):
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb.to(t.dtype)


def rope_omega(d, theta):
    scale = torch.arange(0, d, 2, dtype=torch.float64) / d
    return 1.0 / (theta ** scale)


def liger_pe(ids, axes_dim, theta, dtype):
    """cos / sin tables (B, L, D): [cos phi, cos phi] with phi the per-axis angles concatenated."""
    phis = [ids[..., i].double()[..., None] * rope_omega(d, theta)[None, None]
            for i, d in enumerate(axes_dim)]
    phi = torch.cat(phis, dim=-1).float()
    cos, sin = torch.cos(phi), torch.sin(phi)
    return torch.cat([cos, cos], -1).to(dtype), torch.cat([sin, sin], -1).to(dtype)


def flux_pe(ids, axes_dim, theta, dtype):
    """EmbedND: (B, 1, L, D/2, 2, 2) rotation matrices."""
    outs = []
    for i, d in enumerate(axes_dim):
        out = ids[..., i].double()[..., None] * rope_omega(d, theta)[None, None]
        out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], -1)
        outs.append(out.reshape(*out.shape[:-1], 2, 2).float())
    return torch.cat(outs, dim=-3).unsqueeze(1).to(dtype)


def rms_qk(x, scale):
    xf = x.float()
    rrms = torch.rsqrt(torch.mean(xf ** 2, dim=-1, keepdim=True) + 1e-6)
    return (xf * rrms).to(x.dtype) * scale


def apply_rope(q, k, pe, liger):
    if liger:
        cos, sin = pe  # (B, L, D)
        cos, sin = cos[:, None], sin[:, None]

        def rot(x):
            h = x.shape[-1] // 2
            return torch.cat([-x[..., h:], x[..., :h]], -1)
        return q * cos + rot(q) * sin, k * cos + rot(k) * sin

    def one(x):
        x_ = x.reshape(*x.shape[:-1], -1, 1, 2)
        out = pe[..., 0] * x_[..., 0] + pe[..., 1] * x_[..., 1]
        return out.reshape(*x.shape)
    return one(q), one(k)


def attention(q, k, v, pe, liger):
    """q, k, v: (B, H, L, D) -> (B, L, H*D)."""
    q, k = apply_rope(q, k, pe, liger)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    x = torch.softmax(s, dim=-1) @ v
    B, H, L, D = x.shape
    return x.permute(0, 2, 1, 3).reshape(B, L, H * D)


def lin(W, p, x):
    return F.linear(x, W[p + ".weight"], W.get(p + ".bias"))


def ln(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def heads(x, H):
    B, L, C = x.shape
    return x.reshape(B, L, H, C // H).permute(0, 2, 1, 3)


def mmdit_forward(W, a, img, img_ids, txt, txt_ids, timesteps, y_vec, cond, tap):
    H = a["num_heads"]
    fused = a["fused_qkv"]
    liger = a["use_liger_rope"]
    silu = F.silu
    gelu = lambda x: F.gelu(x, approximate="tanh")  # noqa: E731
    x = lin(W, "img_in", img)
    if a["cond_embed"]:
        x = x + lin(W, "cond_in", cond)
    temb = timestep_embedding(timesteps, 256).to(x.dtype)
    vec = lin(W, "time_in.out_layer", silu(lin(W, "time_in.in_layer", temb)))
    vec = vec + lin(W, "vector_in.out_layer", silu(lin(W, "vector_in.in_layer", y_vec)))
    t = lin(W, "txt_in", txt)
    ids = torch.cat([txt_ids, img_ids], dim=1)
    tap("img_in", x)
    tap("txt_in", t)
    tap("vec", vec)
    if liger:
        pe = liger_pe(ids, a["axes_dim"], a["theta"], x.dtype)
        tap("pe_cos", pe[0])
        tap("pe_sin", pe[1])
    else:
        pe = flux_pe(ids, a["axes_dim"], a["theta"], x.dtype)
        tap("pe", pe)
    sv = silu(vec)
    L_txt = t.shape[1]

    def qkv(p, u):
        if fused:
            q, k, v = lin(W, p + ".qkv", u).chunk(3, dim=-1)
        else:
            q, k, v = lin(W, p + ".q_proj", u), lin(W, p + ".k_proj", u), lin(W, p + ".v_proj", u)
        q = rms_qk(heads(q, H), W[p + ".norm.query_norm.scale"])
        k = rms_qk(heads(k, H), W[p + ".norm.key_norm.scale"])
        return q, k, heads(v, H)

    for i in range(a["depth"]):
        p = f"double_blocks.{i}"
        im = lin(W, p + ".img_mod.lin", sv)[:, None].chunk(6, dim=-1)
        tm = lin(W, p + ".txt_mod.lin", sv)[:, None].chunk(6, dim=-1)
        iq, ik, iv = qkv(p + ".img_attn", (1 + im[1]) * ln(x) + im[0])
        tq, tk, tv = qkv(p + ".txt_attn", (1 + tm[1]) * ln(t) + tm[0])
        att = attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2),
                        pe, liger)
        ta, ia = att[:, :L_txt], att[:, L_txt:]
        x = x + im[2] * lin(W, p + ".img_attn.proj", ia)
        x = x + im[5] * lin(W, p + ".img_mlp.2",
                            gelu(lin(W, p + ".img_mlp.0", (1 + im[4]) * ln(x) + im[3])))
        t = t + tm[2] * lin(W, p + ".txt_attn.proj", ta)
        t = t + tm[5] * lin(W, p + ".txt_mlp.2",
                            gelu(lin(W, p + ".txt_mlp.0", (1 + tm[4]) * ln(t) + tm[3])))
        tap(f"double_blocks.{i}.img", x)
        tap(f"double_blocks.{i}.txt", t)
    j = torch.cat([t, x], dim=1)
    C = a["hidden_size"]
    for i in range(a["depth_single_blocks"]):
        p = f"single_blocks.{i}"
        m = lin(W, p + ".modulation.lin", sv)[:, None].chunk(3, dim=-1)
        u = (1 + m[1]) * ln(j) + m[0]
        if fused:
            rest = W[p + ".linear1.weight"].shape[0] - 3 * C
            q, k, v, h = torch.split(lin(W, p + ".linear1", u), [C, C, C, rest], dim=-1)
        else:
            q, k = lin(W, p + ".q_proj", u), lin(W, p + ".k_proj", u)
            v, h = torch.split(lin(W, p + ".v_mlp", u), [C, W[p + ".v_mlp.weight"].shape[0] - C],
                               dim=-1)
        q = rms_qk(heads(q, H), W[p + ".norm.query_norm.scale"])
        k = rms_qk(heads(k, H), W[p + ".norm.key_norm.scale"])
        att = attention(q, k, heads(v, H), pe, liger)
        j = j + m[2] * lin(W, p + ".linear2", torch.cat([att, gelu(h)], dim=-1))
        tap(f"single_blocks.{i}", j)
    x = j[:, L_txt:]
    tap("final_layer_in", x)
    shift, scale = lin(W, "final_layer.adaLN_modulation.1", sv).chunk(2, dim=1)
    x = (1 + scale[:, None]) * ln(x) + shift[:, None]
    return lin(W, "final_layer.linear", x)


# ------------------------------------------------------------------------------------------------
# Video DC-AE (opensora/models/dc_ae/models: dc_ae.py, nn/ops.py, nn/norm.py, nn/vo_ops.py)


def conv(x, w, b=None, stride=1):
    """ConvLayer(is_video=True): zero F.pad of k//2 on T, H, W, then conv3d without padding."""
    p = w.shape[-1] // 2
    if p:
        x = F.pad(x, (p, p, p, p, p, p))
    return F.conv3d(x, w, b, stride=stride, groups=x.shape[1] // w.shape[1])


def rms3d(x, w, b, eps=1e-5):
    y = x / torch.sqrt(torch.mean(x * x, dim=1, keepdim=True) + eps)
    return y * w[None, :, None, None, None] + b[None, :, None, None, None]


def unshuffle_avg(x, cout, temporal):
    B, C, T, H, W = x.shape
    if temporal and T != 1:
        assert T % 2 == 0, T
        u = x.reshape(B, C, T // 2, 2, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
        u = u.reshape(B, C * 8, T // 2, H // 2, W // 2)
    else:
        u = x.reshape(B, C, T, H // 2, 2, W // 2, 2).permute(0, 1, 4, 6, 2, 3, 5)
        u = u.reshape(B, C * 4, T, H // 2, W // 2)
    g = u.shape[1] // cout
    return u.reshape(B, cout, g, *u.shape[2:]).mean(2)


def dup_shuffle(x, cout, temporal):
    B, C, T, H, W = x.shape
    if temporal and T != 1:
        d = x.repeat_interleave(cout * 8 // C, dim=1)
        y = d.reshape(B, cout, 2, 2, 2, T, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return y.reshape(B, cout, 2 * T, 2 * H, 2 * W)
    d = x.repeat_interleave(cout * 4 // C, dim=1)
    y = d.reshape(B, cout, 2, 2, T, H, W).permute(0, 1, 4, 5, 2, 6, 3)
    return y.reshape(B, cout, T, 2 * H, 2 * W)


def res_block(W, p, x):
    h = F.silu(conv(x, W[p + ".main.conv1.conv.weight"], W[p + ".main.conv1.conv.bias"]))
    h = conv(h, W[p + ".main.conv2.conv.weight"])
    return x + rms3d(h, W[p + ".main.conv2.norm.weight"], W[p + ".main.conv2.norm.bias"])


def evit_block(W, p, x):
    c = p + ".context_module.main"
    qkv = conv(x, W[c + ".qkv.conv.weight"])
    agg = conv(conv(qkv, W[c + ".aggreg.0.0.weight"]), W[c + ".aggreg.0.1.weight"])
    z = torch.cat([qkv, agg], dim=1)
    B, _, T, H, Wd = z.shape
    z = z.reshape(B, -1, 96, T * H * Wd)
    q, k, v = F.relu(z[:, :, 0:32]), F.relu(z[:, :, 32:64]), z[:, :, 64:96]
    v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)
    o = (v @ k.transpose(-1, -2)) @ q
    o = o[:, :, :-1] / (o[:, :, -1:] + 1e-15)
    o = o.reshape(B, -1, T, H, Wd)
    o = rms3d(conv(o, W[c + ".proj.conv.weight"]), W[c + ".proj.norm.weight"],
              W[c + ".proj.norm.bias"])
    x = x + o
    m = p + ".local_module.main"
    h = F.silu(conv(x, W[m + ".inverted_conv.conv.weight"], W[m + ".inverted_conv.conv.bias"]))
    h = conv(h, W[m + ".depth_conv.conv.weight"], W[m + ".depth_conv.conv.bias"])
    a, gate = h.chunk(2, dim=1)
    h = a * F.silu(gate)
    h = rms3d(conv(h, W[m + ".point_conv.conv.weight"]), W[m + ".point_conv.norm.weight"],
              W[m + ".point_conv.norm.bias"])
    return x + h


def dc_block(W, p, x, kind):
    return res_block(W, p, x) if kind == "ResBlock" else evit_block(W, p, x)


def dc_encode(W, cfg, x, tap):
    e = cfg["encoder"]
    widths, depths = e["width_list"], e["depth_list"]
    h = conv(x, W["encoder.project_in.conv.weight"], W["encoder.project_in.conv.bias"])
    tap("enc.project_in", h)
    for s in range(len(widths)):
        p = f"encoder.stages.{s}.op_list"
        for i in range(depths[s]):
            h = dc_block(W, f"{p}.{i}", h, e["block_type"][s])
        if s < len(widths) - 1:
            tmp = e["temporal_downsample"][s]
            stride = (2, 2, 2) if tmp else (1, 2, 2)
            q = f"{p}.{depths[s]}.main.conv"
            h = conv(h, W[q + ".weight"], W[q + ".bias"], stride) + \
                unshuffle_avg(h, widths[s + 1], tmp)
        tap(f"enc.stages.{s}", h)
    lat = cfg["latent_channels"]
    B, C = h.shape[:2]
    q = "encoder.project_out.main.op_list.0.conv"
    return conv(h, W[q + ".weight"], W[q + ".bias"]) + \
        h.reshape(B, lat, C // lat, *h.shape[2:]).mean(2)


def dc_decode(W, cfg, z, tap):
    d = cfg["decoder"]
    widths, depths = d["width_list"], d["depth_list"]
    n = len(widths)
    h = conv(z, W["decoder.project_in.main.conv.weight"], W["decoder.project_in.main.conv.bias"])
    h = h + z.repeat_interleave(widths[-1] // z.shape[1], dim=1)
    tap("dec.project_in", h)
    for s in reversed(range(n)):
        p = f"decoder.stages.{s}.op_list"
        off = 0
        if s < n - 1:
            tmp = d["temporal_upsample"][s]
            T = h.shape[2]
            sf = (2, 2, 2) if (tmp and T != 1) else (1, 2, 2)
            up = F.interpolate(h, scale_factor=sf, mode="nearest")
            q = f"{p}.0.main.conv.conv"
            h = conv(up, W[q + ".weight"], W[q + ".bias"]) + dup_shuffle(h, widths[s], tmp)
            off = 1
        for i in range(depths[s]):
            h = dc_block(W, f"{p}.{off + i}", h, d["block_type"][s])
        tap(f"dec.stages.{s}", h)
    h = F.relu(rms3d(h, W["decoder.project_out.op_list.0.weight"],
                     W["decoder.project_out.op_list.0.bias"]))
    return conv(h, W["decoder.project_out.op_list.2.conv.weight"],
                W["decoder.project_out.op_list.2.conv.bias"])


# ------------------------------------------------------------------------------------------------
# helpers


def cast(W, dtype):
    return {k: v.to(dtype) for k, v in W.items()}


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def report(name, got, want, tol=None):
    d = max_diff(got, want)
    rel = ((got.double() - want.double()).abs() / want.double().abs().clamp_min(1e-12)).max().item()
    ok = bool(((got.double() - want.double()).abs() <= 1e-4 + 1e-4 * want.double().abs()).all())
    print(f"  {name:34s} {list(want.shape)!s:24s} abs {d:.2e} rel {rel:.2e} {'ok' if ok else 'FAIL'}"
          + (f" (float64 rerun {tol:.1e})" if tol is not None else ""))
    return ok


def pack(latent):
    B, C, T, H, W = latent.shape
    return latent.reshape(B, C, T * H * W).transpose(1, 2).contiguous()


def grid_ids(B, T, H, W):
    t, h, w = torch.meshgrid(torch.arange(T), torch.arange(H), torch.arange(W), indexing="ij")
    ids = torch.stack([t, h, w], -1).reshape(1, T * H * W, 3).float()
    return ids.expand(B, -1, -1).contiguous()


def run_mmdit(W, a, ins, taps=None, dtype=torch.float32):
    Wd = cast(W, dtype)
    tap = (lambda n, t: taps.__setitem__("inter." + n, t)) if taps is not None else (
        lambda n, t: None)
    return mmdit_forward(Wd, a, *(ins[k].to(dtype) for k in
                                 ["img", "img_ids", "txt", "txt_ids", "timesteps", "y_vec",
                                  "cond"]), tap)


def mmdit_grads(W, a, ins, target):
    P = {k: v.clone().requires_grad_(True) for k, v in W.items()}
    X = {k: (v.clone().requires_grad_(k in ("img", "txt", "y_vec", "cond"))) for k, v in
         ins.items()}
    out = mmdit_forward(P, a, *(X[k] for k in ["img", "img_ids", "txt", "txt_ids", "timesteps",
                                                "y_vec", "cond"]), lambda n, t: None)
    loss = torch.mean((out - target) ** 2)
    loss.backward()
    g = {k: P[k].grad if P[k].grad is not None else torch.zeros_like(P[k]) for k in W}
    gi = {f"grad.{k}": X[k].grad for k in ("img", "txt", "y_vec", "cond")}
    return loss.item(), g, gi


# ------------------------------------------------------------------------------------------------
# verification against the tiny fixtures


def verify_tiny():
    ok = True
    for name in ("mmdit_tiny", "mmdit_tiny_fused"):
        d = os.path.join(FIXTURES, "tiny", name)
        case = json.load(open(os.path.join(d, "case.json")))
        W = read_safetensors(os.path.join(d, "weights.safetensors"))
        S = read_safetensors(os.path.join(d, "tensors.safetensors"))
        a = case["model_args"]
        print(f"{name}: {sum(v.numel() for v in W.values()):,} parameters")
        taps = {}
        out = run_mmdit(W, a, S, taps)
        ok &= report("out", out, S["out"], case["float64_rerun_max_abs_diff"].get("out"))
        for k, t in taps.items():
            if k in S:
                ok &= report(k, t, S[k])
        G = read_safetensors(os.path.join(d, "grads.safetensors"))
        loss, g, gi = mmdit_grads(W, a, S, S["target"])
        print(f"  loss {loss:.9g} vs {case['loss_value']:.9g}")
        ok &= abs(loss - case["loss_value"]) <= 1e-4 + 1e-4 * abs(case["loss_value"])
        worst = max(max_diff(g[k], G[k]) for k in G)
        print(f"  param grads: max abs diff {worst:.2e} over {len(G)} tensors")
        ok &= all(bool(((g[k] - G[k]).abs() <= 1e-4 + 1e-4 * G[k].abs()).all()) for k in G)
        for k, t in gi.items():
            if k in S:
                ok &= report(k, t, S[k])
    d = os.path.join(FIXTURES, "tiny", "dc_ae_tiny")
    case = json.load(open(os.path.join(d, "case.json")))
    W = read_safetensors(os.path.join(d, "weights.safetensors"))
    S = read_safetensors(os.path.join(d, "tensors.safetensors"))
    cfg = case["config"]
    print(f"dc_ae_tiny: {sum(v.numel() for v in W.values()):,} parameters")
    f64 = case["float64_rerun_max_abs_diff"]
    with torch.no_grad():
        for out, call in case["calls"].items():
            fn, inp = call.split("(")[0].split(".")[1], call.split("(")[1].split(")")[0]
            taps = {}
            tap = lambda n, t: taps.__setitem__("inter." + n, t)  # noqa: E731
            y = (dc_encode if fn == "encode" else dc_decode)(W, cfg, S[inp], tap)
            ok &= report(out, y, S[out], f64.get(out))
            for k in case["intermediates"]["stored"]:
                if k in taps and list(taps[k].shape) == list(S[k].shape) and out in (
                        "latent", "decoded"):
                    ok &= report(k, taps[k], S[k])
    print("tiny verification:", "PASSED" if ok else "FAILED")
    return ok


# ------------------------------------------------------------------------------------------------
# release cases


def make_mmdit(out_dir, seed, grads):
    man = json.load(open(os.path.join(FIXTURES, "manifests", "mmdit_hcae.json")))
    a = dict(man["model_args"])
    a["depth"], a["depth_single_blocks"] = 1, 1
    keep = lambda k: not (k.startswith("double_blocks.") or k.startswith("single_blocks.")) or \
        k.startswith("double_blocks.0.") or k.startswith("single_blocks.0.")  # noqa: E731
    shapes = {k: v["shape"] for k, v in man["parameters"].items() if keep(k)}
    t0 = time.time()
    W = init_weights(shapes, seed)
    nparam = sum(v.numel() for v in W.values())
    print(f"mmdit_release_1x1: {nparam:,} parameters ({len(W)} tensors), init "
          f"{time.time() - t0:.1f} s")
    g = torch.Generator().manual_seed(seed + 1)
    B, T, H, Wd, L = 1, 1, 4, 4, 8
    C = a["in_channels"]
    latent = torch.randn(B, C, T, H, Wd, generator=g)
    ref = torch.randn(B, C, T, H, Wd, generator=g)
    mask = torch.zeros(B, 1, T, H, Wd)
    mask[:, :, 0] = 1.0
    cond_latent = torch.cat([mask, ref * mask], dim=1)
    ins = {
        "img": pack(latent), "img_ids": grid_ids(B, T, H, Wd),
        "txt": torch.randn(B, L, a["context_in_dim"], generator=g),
        "txt_ids": torch.zeros(B, L, 3),
        "timesteps": torch.rand(B, generator=g) * 0.8 + 0.1,
        "y_vec": torch.randn(B, a["vec_in_dim"], generator=g),
        "cond": pack(cond_latent),
    }
    target = torch.randn(B, T * H * Wd, C, generator=g)
    t0 = time.time()
    taps = {}
    with torch.no_grad():
        out = run_mmdit(W, a, ins, taps)
        t_fwd = time.time() - t0
    print(f"  forward {t_fwd:.1f} s; |out| max {out.abs().max().item():.3g}")
    tensors = dict(ins)
    tensors["latent"] = latent
    tensors["cond_latent"] = cond_latent
    tensors.update(taps)
    tensors["out"] = out
    tensors["out_latent"] = out.transpose(1, 2).reshape(B, C, T, H, Wd)
    tensors["target"] = target
    case = {
        "case": "mmdit_release_1x1", "set": "release-width",
        "source": "tools/make_release_cases.py: PyTorch port of MMDiTModel (opensora/models/mmdit) "
                  "checked against ../shared/fixtures/tiny/mmdit_tiny (random weights, float32)",
        "seed": seed, "model_args": a, "num_parameters": nparam,
        "weight_init": "fixtures README rule (norm scales U(0.75,1.25), biases U(-0.2,0.2), "
                       "weights U(-a,a), a = sqrt(3/fan_in)); the stored weights are authoritative",
        "call": "out = model(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, "
                "timesteps=timesteps, y_vec=y_vec, cond=cond, guidance=None)",
        "batch": B, "latent_thw": [T, H, Wd], "num_img_tokens": T * H * Wd, "txt_len": L,
        "tensor_shapes": {k: list(v.shape) for k, v in tensors.items()},
        "weight_shapes": {k: list(v.shape) for k, v in W.items()},
        "float64_rerun_max_abs_diff": {},
        "stats": {k: stats(v) for k, v in tensors.items()},
    }
    d = os.path.join(out_dir, "mmdit_release_1x1")
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    write_safetensors(os.path.join(d, "weights.safetensors"), W)
    if grads:
        # float32 only: a float64 backward at this width needs ~11 GB more memory
        loss, gp, gi = mmdit_grads(W, a, ins, target)
        gmax = max(gp[k].abs().max().item() for k in gp)
        tensors.update(gi)
        case["tensor_shapes"] = {k: list(v.shape) for k, v in tensors.items()}
        case["stats"] = {k: stats(v) for k, v in tensors.items()}
    write_safetensors(os.path.join(d, "tensors.safetensors"), tensors)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    if grads:
        dg = os.path.join(out_dir, "mmdit_release_1x1_grads")
        os.makedirs(dg, exist_ok=True)
        for n in ("weights.safetensors", "tensors.safetensors"):
            p = os.path.join(dg, n)
            if os.path.lexists(p):
                os.remove(p)
            os.symlink(os.path.join("..", "mmdit_release_1x1", n), p)
        write_safetensors(os.path.join(dg, "grads.safetensors"), gp)
        del gp
        cg = dict(case)
        cg["case"] = "mmdit_release_1x1_grads"
        cg["loss"] = "loss = mean((out - target)^2) over all B*N*C elements"
        cg["loss_value"] = loss
        cg["params_without_grad"] = []
        cg["param_grads_max_abs"] = gmax
        cg["param_grads_float64_rerun"] = "not computed (memory); see mmdit_tiny's"
        with open(os.path.join(dg, "case.json"), "w") as f:
            json.dump(cg, f, indent=1)
        print(f"  loss {loss:.6g}; max |param grad| {gmax:.3g}")
    print(f"  wrote {d} in {time.time() - t0:.1f} s")
    del W
    diffs = float64_reference(d)
    if grads:
        p = os.path.join(out_dir, "mmdit_release_1x1_grads", "case.json")
        cg = json.load(open(p))
        cg["float64_rerun_max_abs_diff"] = diffs
        with open(p, "w") as f:
            json.dump(cg, f, indent=1)


def make_dc_ae(out_dir, seed, frames, size):
    man = json.load(open(os.path.join(FIXTURES, "manifests", "dc_ae_f32t4c128.json")))
    cfg = man["config"]
    shapes = {k: v["shape"] for k, v in man["parameters"].items()}
    t0 = time.time()
    W = init_weights(shapes, seed)
    nparam = sum(v.numel() for v in W.values())
    print(f"dc_ae_release: {nparam:,} parameters ({len(W)} tensors), init {time.time() - t0:.1f} s")
    g = torch.Generator().manual_seed(seed + 1)
    video = torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1
    image = torch.rand(1, 3, 1, size, size, generator=g) * 2 - 1
    tensors = {"video": video}
    inters = {}
    times = {}
    stored_inter = ["inter.enc.project_in"] + [f"inter.enc.stages.{s}" for s in range(6)] + \
        ["inter.dec.project_in"] + [f"inter.dec.stages.{s}" for s in range(5, -1, -1)]
    with torch.no_grad():
        for out, fn, inp in (("latent", "encode", "video"), ("decoded", "decode", "latent"),
                             ("image_latent", "encode", "image"),
                             ("image_decoded", "decode", "image_latent")):
            if inp == "image":
                tensors["image"] = image
            x = tensors[inp]
            taps = {}
            tap = (lambda n, t: taps.__setitem__("inter." + n, t)) if inp in ("video", "latent") \
                else (lambda n, t: None)
            t0 = time.time()
            y = (dc_encode if fn == "encode" else dc_decode)(W, cfg, x, tap)
            times[out] = time.time() - t0
            tensors[out] = y
            inters.update(taps)
            print(f"  {out} = model.{fn}({inp}) {list(y.shape)}: {times[out]:.1f} s, "
                  f"|{out}| max {y.abs().max().item():.3g}")
    order = ["video", "latent", "decoded"] + [k for k in stored_inter if k in inters] + \
        ["image", "image_latent", "image_decoded"]
    tensors = {k: (tensors[k] if k in tensors else inters[k]) for k in order}
    case = {
        "case": "dc_ae_release", "set": "release-width",
        "source": "tools/make_release_cases.py: PyTorch port of DCAE (opensora/models/dc_ae) "
                  "checked against ../shared/fixtures/tiny/dc_ae_tiny (random weights, float32)",
        "seed": seed, "config": cfg, "num_parameters": nparam,
        "weight_init": "fixtures README rule (norm weights U(0.75,1.25), biases U(-0.2,0.2), "
                       "weights U(-a,a), a = sqrt(3/fan_in)); the stored weights are authoritative",
        "calls": {"latent": "model.encode(video)  (no tiling, scaling_factor None)",
                  "decoded": "model.decode(latent)",
                  "image_latent": "model.encode(image)  (T = 1)",
                  "image_decoded": "model.decode(image_latent)"},
        "layout": "all video tensors are NCTHW (batch, channels, frames, height, width)",
        "tensor_shapes": {k: list(v.shape) for k, v in tensors.items()},
        "weight_shapes": {k: list(v.shape) for k, v in W.items()},
        "intermediates": {
            "inter.enc.project_in": "output of encoder.project_in",
            "inter.enc.stages.i": "output of encoder.stages[i] (blocks, then the downsample "
                                  "block if i < 5); run in order i = 0..5",
            "inter.dec.project_in": "output of decoder.project_in",
            "inter.dec.stages.i": "output of decoder.stages[i] (upsample block first if i < 5, "
                                  "then blocks); run in order i = 5..0",
            "stored": sorted(k for k in inters)},
        "float64_rerun_max_abs_diff": {},
        "pytorch_seconds_float32": times,
        "stats": {k: stats(v) for k, v in tensors.items()},
    }
    d = os.path.join(out_dir, "dc_ae_release")
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    write_safetensors(os.path.join(d, "weights.safetensors"), W)
    write_safetensors(os.path.join(d, "tensors.safetensors"), tensors)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    print(f"  wrote {d} in {time.time() - t0:.1f} s")
    del W
    float64_reference(d)


def criterion(got, want, atol=1e-4, rtol=1e-4):
    d = (got.double() - want.double()).abs()
    return bool((d <= atol + rtol * want.double().abs()).all())


def float64_reference(d):
    """Reruns a case in float64: per stored tensor, case.json gets `float64_rerun_max_abs_diff`
    (stored float32 result vs the float64 rerun on the same stored inputs) and
    `float32_within_tol_of_float64` (whether PyTorch's own float32 result passes 1e-4 abs + 1e-4
    rel against float64). Writes the variant `<d>_f64ref/` (weights symlinked) whose
    tensors.safetensors holds the float64 results rounded to float32, each call fed with the
    variant's own stored input (so `decoded` there is decode64(round32(encode64(video)))):
    `deno task golden <d>_f64ref` then measures Kino's error against float64."""
    t0 = time.time()
    case = json.load(open(os.path.join(d, "case.json")))
    S = read_safetensors(os.path.join(d, "tensors.safetensors"))
    W64 = cast(read_safetensors(os.path.join(d, "weights.safetensors")), torch.float64)
    kind = case["case"]
    rerun, var = {}, dict(S)
    with torch.no_grad():
        if kind.startswith("mmdit"):
            taps = {}
            rerun["out"] = run_mmdit(W64, case["model_args"], S, taps, torch.float64)
            rerun.update(taps)
            var.update(rerun)
        else:
            cfg = case["config"]
            for out, call in case["calls"].items():
                fn, inp = call.split("(")[0].split(".")[1], call.split("(")[1].split(")")[0]
                f = dc_encode if fn == "encode" else dc_decode
                taps = {}
                tap = lambda n, t: taps.__setitem__("inter." + n, t)  # noqa: E731
                rerun[out] = f(W64, cfg, S[inp].double(), tap)
                stored = [k for k in taps if k in S and list(taps[k].shape) == list(S[k].shape)
                          and k not in rerun]
                for k in stored:
                    rerun[k] = taps[k]
                if inp in case["calls"]:  # the input is itself a result: chain the float64 one
                    taps = {}
                    var[out] = f(W64, cfg, var[inp].float().double(), tap)
                    for k in stored:
                        var[k] = taps[k]
                else:
                    var[out] = rerun[out]
                    for k in stored:
                        var[k] = rerun[k]
    del W64
    diffs, within = {}, {}
    for k in S:
        if k in rerun:
            diffs[k] = max_diff(S[k], rerun[k])
            within[k] = criterion(S[k], rerun[k])
            print(f"  float64 rerun {k:24s} max abs diff {diffs[k]:.2e} "
                  f"(max |x| {rerun[k].abs().max().item():.3g}); PyTorch float32 "
                  f"{'within' if within[k] else 'NOT within'} 1e-4 + 1e-4 rel")
    case["float64_rerun_max_abs_diff"] = diffs
    case["float32_within_tol_of_float64"] = within
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    v = d.rstrip("/") + "_f64ref"
    os.makedirs(v, exist_ok=True)
    p = os.path.join(v, "weights.safetensors")
    if os.path.lexists(p):
        os.remove(p)
    os.symlink(os.path.join("..", os.path.basename(d.rstrip("/")), "weights.safetensors"), p)
    write_safetensors(os.path.join(v, "tensors.safetensors"),
                      {k: t.to(torch.float32) for k, t in var.items()})
    cv = dict(case)
    cv["reference"] = ("float64: every result is PyTorch's float64 rerun rounded to float32, each "
                       "call fed with this directory's stored input; weights: ../" +
                       os.path.basename(d.rstrip("/")))
    cv["stats"] = {k: stats(t) for k, t in var.items()}
    with open(os.path.join(v, "case.json"), "w") as f:
        json.dump(cv, f, indent=1)
    print(f"  float64 reference: {v} ({time.time() - t0:.1f} s)")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/kino-release-cases")
    ap.add_argument("--only", choices=["mmdit", "dc_ae"], default=None)
    ap.add_argument("--grads", action="store_true",
                    help="also write mmdit_release_1x1_grads (MSE backward reference)")
    ap.add_argument("--verify-tiny", action="store_true",
                    help="check the PyTorch port against the tiny fixtures and exit")
    ap.add_argument("--f64-ref", metavar="CASE_DIR",
                    help="only (re)do the float64 rerun of an existing case: per-tensor "
                         "float64_rerun_max_abs_diff in its case.json and CASE_DIR_f64ref/")
    ap.add_argument("--frames", type=int, default=8, help="DC-AE video frames (1 or 4k)")
    ap.add_argument("--size", type=int, default=32, help="DC-AE height = width (multiple of 32)")
    ap.add_argument("--seed", type=int, default=20250418)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.verify_tiny:
        return 0 if verify_tiny() else 1
    if args.f64_ref:
        float64_reference(os.path.abspath(args.f64_ref))
        return 0
    out = os.path.abspath(args.out)
    repo = os.path.normpath(os.path.join(HERE, ".."))
    for bad in (repo, SHARED):
        if out == bad or out.startswith(bad + os.sep):
            sys.exit(f"--out {out} is inside {bad}: the cases are ~2 GB each, write them elsewhere")
    os.makedirs(out, exist_ok=True)
    if args.only in (None, "mmdit"):
        make_mmdit(out, args.seed, args.grads)
    if args.only in (None, "dc_ae"):
        make_dc_ae(out, args.seed + 100, args.frames, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
