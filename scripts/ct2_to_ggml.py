#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model into the ggml file whisper.cpp loads.

Usage: ct2_to_ggml.py MODEL_DIR WHISPER_ASSETS_DIR OUT.bin

MODEL_DIR holds CTranslate2's model.bin (a WhisperSpec, float16 or float32).
WHISPER_ASSETS_DIR holds mel_filters.npz and gpt2.tiktoken (multilingual.tiktoken
for multilingual models) from openai-whisper's whisper/assets.

The output has the layout whisper.cpp's convert-pt-to-ggml.py writes from the
original PyTorch checkpoint. Only the standard library is used, so the installer
needs nothing beyond python3: ggml's f16 is IEEE half like CTranslate2's float16,
so most tensors are copied as raw bytes.
"""

import ast
import base64
import binascii
import os
import struct
import sys
import zipfile
from pathlib import Path

GGML_MAGIC = 0x67676D6C
CT2_VERSION = 6
# CTranslate2's DataType enum (include/ctranslate2/types.h).
F32, I8, I16, I32, F16 = 0, 1, 2, 3, 4
ITEM_SIZE = {F32: 4, I8: 1, I16: 2, I32: 4, F16: 2}


class ConvertError(Exception):
    pass


class Var:
    def __init__(self, name, dims, dtype, data):
        self.name, self.dims, self.dtype, self.data = name, dims, dtype, data

    def rows(self, start, count):
        """Row slice of a 2-D (or 1-D) tensor: how fused QKV tensors are split."""
        row = len(self.data) // self.dims[0]
        dims = (count,) + self.dims[1:]
        return Var(self.name, dims, self.dtype, self.data[start * row:(start + count) * row])

    def floats(self):
        fmt = "e" if self.dtype == F16 else "f"
        return struct.unpack(f"<{len(self.data) // ITEM_SIZE[self.dtype]}{fmt}", self.data)

    def as_f16(self):
        if self.dtype == F16:
            return bytes(self.data)
        return struct.pack(f"<{len(self.data) // 4}e", *self.floats())

    def as_f32(self):
        if self.dtype == F32:
            return bytes(self.data)
        return struct.pack(f"<{len(self.data) // 2}f", *self.floats())


def read_ct2(path):
    """Parse CTranslate2's model.bin (layout of ModelSpec._serialize)."""
    try:
        buf = memoryview(path.read_bytes())
    except OSError as e:
        raise ConvertError(f"{path}: cannot read: {e.strerror}")
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(buf):
            raise ConvertError(f"{path}: truncated (wanted {n} bytes at offset {pos})")
        pos += n
        return buf[pos - n:pos]

    def unpack(fmt):
        return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))

    def string():
        (n,) = unpack("H")
        raw = bytes(take(n))
        if n == 0 or raw[-1] != 0:
            raise ConvertError(f"{path}: malformed string at offset {pos - n}")
        return raw[:-1].decode("utf-8", "replace")

    (version,) = unpack("I")
    if version != CT2_VERSION:
        raise ConvertError(f"{path}: CTranslate2 binary version {version}, expected {CT2_VERSION}")
    spec = string()
    if spec != "WhisperSpec":
        raise ConvertError(f"{path}: model is a {spec!r}, not a WhisperSpec")
    unpack("I")  # spec revision: the names we read have been stable across them
    variables = {}
    for _ in range(unpack("I")[0]):
        name = string()
        (rank,) = unpack("B")
        dims = unpack(f"{rank}I")
        dtype, nbytes = unpack("BI")
        count = 1
        for d in dims:
            count *= d
        if dtype not in ITEM_SIZE or nbytes != count * ITEM_SIZE[dtype]:
            raise ConvertError(f"{path}: variable {name} has dtype {dtype} and {nbytes} bytes "
                               f"for shape {dims}: not a supported layout")
        variables[name] = Var(name, dims, dtype, take(nbytes))
    for _ in range(unpack("I")[0]):
        alias, target = string(), string()
        if target in variables:
            variables[alias] = variables[target]
    if pos != len(buf):
        raise ConvertError(f"{path}: {len(buf) - pos} unexpected trailing bytes")
    return variables


def read_npy(archive, member):
    """The one float32 matrix we need from an .npz, parsed without numpy."""
    try:
        with zipfile.ZipFile(archive) as z:
            raw = z.read(member)
    except OSError as e:
        raise ConvertError(f"{archive}: cannot read: {e.strerror}")
    except zipfile.BadZipFile as e:
        raise ConvertError(f"{archive}: not a valid .npz: {e}")
    except KeyError:
        raise ConvertError(f"{archive}: has no {member}")
    if raw[:6] != b"\x93NUMPY" or len(raw) < 10:
        raise ConvertError(f"{archive}: {member} is not an .npy file")
    if raw[6] == 1:
        start, (hlen,) = 10, struct.unpack_from("<H", raw, 8)
    else:
        start, (hlen,) = 12, struct.unpack_from("<I", raw, 8)
    try:
        header = ast.literal_eval(raw[start:start + hlen].decode("latin-1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise ConvertError(f"{archive}: {member} has an unreadable .npy header")
    data = raw[start + hlen:]
    if descr != "<f4" or fortran or len(shape) != 2 or len(data) != shape[0] * shape[1] * 4:
        raise ConvertError(f"{archive}: {member} is {descr} {shape} (fortran={fortran}), "
                           "expected a C-order float32 matrix")
    return shape, data


def read_tiktoken(path):
    """Token bytes in rank order: whisper.cpp assigns ids by position."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise ConvertError(f"{path}: cannot read: {e.strerror}")
    tokens = []
    for n, line in enumerate((l for l in lines if l), 1):
        try:
            token, rank = line.split()
            # multilingual.tiktoken ends with an empty token written as "=".
            raw = b"" if token == b"=" else base64.b64decode(token, validate=True)
            tokens.append((int(rank), raw))
        except (ValueError, binascii.Error):
            raise ConvertError(f"{path}: line {n} is not 'BASE64 RANK'")
    tokens.sort()
    if [r for r, _ in tokens] != list(range(len(tokens))):
        raise ConvertError(f"{path}: ranks are not 0..{len(tokens) - 1} without gaps")
    tokens = [t for _, t in tokens]
    # The published ggml models list 50,257 entries: gpt2.tiktoken lacks the last one,
    # which the English models' vocabulary had as <|endoftext|>; keep it so our file is
    # byte-identical (multilingual.tiktoken already ends with an empty one).
    if len(tokens) == 50_256:
        tokens.append(b"<|endoftext|>")
    return tokens


def convert(model_dir, assets_dir, out):
    model = model_dir / "model.bin"
    v = read_ct2(model)

    def get(name):
        if name not in v:
            raise ConvertError(f"{model}: missing variable {name}")
        return v[name]

    def n_layers(prefix):
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
            n += 1
        return n

    def scalar(name):
        var = get(name)
        if var.dtype != I16 or var.dims:
            raise ConvertError(f"{model}: {name} is not an int16 scalar")
        return struct.unpack("<h", var.data)[0]

    emb, conv1 = get("decoder/embeddings/weight"), get("encoder/conv1/weight")
    audio_pos = get("encoder/position_encodings/encodings")
    text_pos = get("decoder/position_encodings/encodings")
    n_vocab, n_mels = emb.dims[0], conv1.dims[1]
    hparams = [n_vocab, audio_pos.dims[0], audio_pos.dims[1], scalar("encoder/num_heads"),
               n_layers("encoder"), text_pos.dims[0], text_pos.dims[1],
               scalar("decoder/num_heads"), n_layers("decoder"), n_mels]

    (mel_rows, n_fft), mel = read_npy(assets_dir / "mel_filters.npz", f"mel_{n_mels}.npy")
    vocab_name = "multilingual.tiktoken" if n_vocab >= 51865 else "gpt2.tiktoken"
    vocab = read_tiktoken(assets_dir / vocab_name)

    tensors = []  # (openai-whisper name, Var, ggml ftype)

    def add(name, var, shape=None):
        if shape:
            var = Var(var.name, shape, var.dtype, var.data)
        # As convert-pt-to-ggml.py: vectors, conv biases (stored as [n, 1]) and the
        # positional embeddings stay f32 because ggml adds them to f32 activations.
        small = len(var.dims) < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))
        tensors.append((name, var, 0 if small else 1))

    def linear(dst, src, bias=True):
        add(f"{dst}.weight", get(f"{src}/weight"))
        if bias:
            add(f"{dst}.bias", get(f"{src}/bias"))

    def norm(dst, src):
        add(f"{dst}.weight", get(f"{src}/gamma"))
        add(f"{dst}.bias", get(f"{src}/beta"))

    def split(dst, src, names):
        """Unfuse CTranslate2's concatenated projections into whisper's separate ones."""
        w, b = get(f"{src}/weight"), get(f"{src}/bias")
        d = w.dims[0] // len(names)
        if w.dims[0] != d * len(names) or b.dims != (w.dims[0],):
            raise ConvertError(f"{model}: {src} has shape {w.dims}, cannot split into {names}")
        for i, part in enumerate(names):
            add(f"{dst}.{part}.weight", w.rows(i * d, d))
            if part != "key":
                add(f"{dst}.{part}.bias", b.rows(i * d, d))
            elif any(b.rows(i * d, d).floats()):
                # whisper has no key bias; dropping a non-zero one would corrupt attention.
                raise ConvertError(f"{model}: {src} has a non-zero key bias")

    def block(dst, src, cross):
        split(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            split(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
            norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    # Same order as the PyTorch state dict, so the file matches the reference converter's.
    add("encoder.positional_embedding", audio_pos)
    add("encoder.conv1.weight", conv1)
    add("encoder.conv1.bias", get("encoder/conv1/bias"), (conv1.dims[0], 1))
    conv2 = get("encoder/conv2/weight")
    add("encoder.conv2.weight", conv2)
    add("encoder.conv2.bias", get("encoder/conv2/bias"), (conv2.dims[0], 1))
    for i in range(hparams[4]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    add("decoder.positional_embedding", text_pos)
    add("decoder.token_embedding.weight", emb)
    for i in range(hparams[8]):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    for name, var, _ in tensors:
        if var.dtype not in (F16, F32):
            raise ConvertError(f"{model}: {var.name} has dtype {var.dtype}; "
                               "quantized models are not supported")

    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<12i", GGML_MAGIC, *hparams, 1))
            f.write(struct.pack("<2i", mel_rows, n_fft))
            f.write(mel)
            f.write(struct.pack("<i", len(vocab)))
            for token in vocab:
                f.write(struct.pack("<i", len(token)) + token)
            for name, var, ftype in tensors:
                raw = name.encode()
                f.write(struct.pack(f"<{3 + len(var.dims)}i", len(var.dims), len(raw), ftype,
                                    *reversed(var.dims)))
                f.write(raw)
                f.write(var.as_f32() if ftype == 0 else var.as_f16())
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConvertError(f"{out}: cannot write: {e.strerror}")
    return len(tensors)


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        n = convert(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    except ConvertError as e:
        print(f"ct2_to_ggml: {e}", file=sys.stderr)
        return 1
    print(f"ct2_to_ggml: wrote {n} tensors to {argv[3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
