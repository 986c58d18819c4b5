#!/usr/bin/env python3
"""Writes the tokenizer test expectations with Hugging Face `tokenizers` (the reference).

Run on a machine with `tokenizers` installed, from the repository root:

    python3 tools/reference/make_tokenizer_refs.py --out tests/data/tokenizers

For each real family under tests/data/tokenizers/<family>/tokenizer.json.xz it writes
<out>/<family>/reference.json. It also builds small tokenizers with HF `tokenizers` (a Unigram, a
WordPiece, and byte-level BPE variants that cover every normalizer, pre-tokenizer, post-processor
and decoder type), saves each as <out>/synthetic/<name>/tokenizer.json.xz and writes its
reference.json.xz beside it. Every expected value comes from HF; nothing comes from mlxcpp.
"""
import argparse
import json
import lzma
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_corpus import CORPUS, TRAIN_TEXT  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,  # noqa: E402
                        pre_tokenizers, processors, trainers)

FAMILIES = ["gemma3", "llama3", "llama3_1", "qwen3"]


def safe_decode(tok, ids, skip):
    # HF's Strip decoder panics on an empty piece; null records that HF gave no answer.
    try:
        return tok.decode(ids, skip_special_tokens=skip)
    except BaseException:  # pyo3's PanicException is not an Exception
        return None


def references(tok):
    cases = []
    for text in CORPUS:
        with_special = tok.encode(text, add_special_tokens=True)
        plain = tok.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": with_special.ids,
            "ids_no_special": plain.ids,
            "decoded": safe_decode(tok, with_special.ids, False),
            "decoded_skip_special": safe_decode(tok, with_special.ids, True),
        })
    # Pairs exercise the post-processors' pair templates.
    pairs = []
    for a, b in [("Hello world", "How are you?"), ("", "x"), ("first", "")]:
        enc = tok.encode(a, b, add_special_tokens=True)
        pairs.append({"a": a, "b": b, "ids": enc.ids, "type_ids": enc.type_ids})
    return {"tokenizers_version": tokenizers.__version__, "cases": cases, "pairs": pairs}


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def training_lines():
    lines = TRAIN_TEXT.splitlines() * 4 + CORPUS
    return [l for l in lines if l]


def build_unigram():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", shrinking_factor=0.75)
    tok.train_from_iterator(training_lines(), trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return tok


def build_wordpiece(processor):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=800,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(training_lines(), trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if processor == "bert":
        tok.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def build_bpe_subword():
    """BPE with a continuing-subword prefix and an unknown token (no byte fallback)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKD(), normalizers.Lowercase(), normalizers.Strip(left=True, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["[UNK]", "<s>", "</s>", "<mask>"],
                                  continuing_subword_prefix="##")
    tok.train_from_iterator(training_lines(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True),
                            AddedToken("[rs]", rstrip=True, special=True)])
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=True),
                    AddedToken("Ω", normalized=True), AddedToken("QUICK", normalized=False)])
    return tok


def build_byte_level_base():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tok.train_from_iterator(training_lines(), trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


def byte_level_variants(base_json):
    """Variants of one byte-level BPE: each swaps in other normalizers, pre-tokenizers,
    post-processors or decoders. ByteLevel(use_regex=False) stays last so every byte is in
    the vocabulary."""
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    P = pre_tokenizers
    N = normalizers
    V = {}
    V["bl_regex_prefix"] = dict(pre=P.ByteLevel(add_prefix_space=True, use_regex=True),
                                post=processors.ByteLevel(trim_offsets=True))
    for behavior in ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]:
        V["bl_split_" + behavior] = dict(pre=P.Sequence([P.Split(Regex(r"[,.!?;:\s]"), behavior), bl]))
        V["bl_split_str_" + behavior] = dict(pre=P.Sequence([P.Split(" ", behavior), bl]))
    V["bl_split_invert"] = dict(pre=P.Sequence([P.Split(Regex(r"\w+"), "isolated", invert=True), bl]))
    V["bl_split_invert_removed"] = dict(pre=P.Sequence([P.Split(Regex(r"\p{L}+"), "removed", invert=True), bl]))
    V["bl_whitespace"] = dict(pre=P.Sequence([P.Whitespace(), bl]))
    V["bl_whitespacesplit"] = dict(pre=P.Sequence([P.WhitespaceSplit(), bl]))
    V["bl_digits"] = dict(pre=P.Sequence([P.Digits(individual_digits=False), bl]))
    V["bl_digits_individual"] = dict(pre=P.Sequence([P.Digits(individual_digits=True), bl]))
    V["bl_punctuation"] = dict(pre=P.Sequence([P.Punctuation(), bl]))
    V["bl_punctuation_next"] = dict(pre=P.Sequence([P.Punctuation(behavior="merged_with_next"), bl]))
    V["bl_bert_pre"] = dict(pre=P.Sequence([P.BertPreTokenizer(), bl]))
    for scheme in ["always", "first", "never"]:
        V["bl_metaspace_" + scheme] = dict(
            pre=P.Sequence([P.Metaspace(prepend_scheme=scheme, split=True), bl]))
    V["bl_metaspace_nosplit"] = dict(pre=P.Sequence([P.Metaspace(prepend_scheme="always", split=False), bl]))
    V["bl_nfd"] = dict(norm=N.NFD())
    V["bl_nfkc"] = dict(norm=N.NFKC())
    V["bl_nfkd"] = dict(norm=N.NFKD())
    V["bl_nfc_lower"] = dict(norm=N.Sequence([N.NFC(), N.Lowercase()]))
    V["bl_strip"] = dict(norm=N.Strip(left=True, right=False))
    V["bl_replace_prepend"] = dict(norm=N.Sequence([N.Replace(Regex(r"\s+"), " "), N.Replace("a", "ä"),
                                                    N.Prepend("▁")]))
    V["bl_bert_norm"] = dict(norm=N.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=True, lowercase=True))
    V["bl_template"] = dict(post=processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|endoftext|> $A <|endoftext|>",
                                      pair="<|endoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1",
                                      special_tokens=[("<|endoftext|>", 0)])]))
    V["bl_bert_proc"] = dict(post=processors.BertProcessing(("<|endoftext|>", 0), ("<|endoftext|>", 0)))
    V["bl_decoders"] = dict(dec=decoders.Sequence([decoders.ByteLevel(), decoders.Replace("e", "E"),
                                                   decoders.Strip(" ", 1, 1)]))
    out = {}
    for name, v in V.items():
      try:
        tok = Tokenizer.from_str(base_json)
        if "norm" in v:
            tok.normalizer = v["norm"]
        if "pre" in v:
            tok.pre_tokenizer = v["pre"]
        if "post" in v:
            tok.post_processor = v["post"]
        if "dec" in v:
            tok.decoder = v["dec"]
        out[name] = tok
      except BaseException as e:
        print("FAILED", name, repr(e), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data/tokenizers", help="folder with the families")
    ap.add_argument("--out", default="tests/data/tokenizers")
    args = ap.parse_args()

    for fam in FAMILIES:
        with lzma.open(os.path.join(args.data, fam, "tokenizer.json.xz"), "rt", encoding="utf-8") as f:
            tok = Tokenizer.from_str(f.read())
        write(os.path.join(args.out, fam, "reference.json"), references(tok))
        print("wrote", fam, flush=True)

    synth = {}
    for name, build in [("unigram", build_unigram), ("wordpiece", lambda: build_wordpiece("bert")),
                        ("wordpiece_template", lambda: build_wordpiece("template")),
                        ("bpe_subword", build_bpe_subword)]:
        try:
            synth[name] = build()
        except BaseException as e:  # keep going: one failure should not lose the rest
            print("FAILED", name, repr(e), flush=True)
    base = build_byte_level_base()
    synth["bl_base"] = base
    synth.update(byte_level_variants(base.to_str()))
    for name, tok in synth.items():
      try:
        folder = os.path.join(args.out, "synthetic", name)
        os.makedirs(folder, exist_ok=True)
        tok.save(os.path.join(folder, "tokenizer.json"))
        # Reload from the saved file so the reference is what the file says.
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        write(os.path.join(folder, "reference.json"), references(tok))
        # Stored xz-compressed, like the real tokenizers (the tests decompress either form).
        for fname in ["tokenizer.json", "reference.json"]:
            plain = os.path.join(folder, fname)
            with open(plain, "rb") as f, lzma.open(plain + ".xz", "wb", preset=9) as g:
                g.write(f.read())
            os.remove(plain)
        print("wrote synthetic", name, flush=True)
      except BaseException as e:
        print("FAILED", name, repr(e), flush=True)


if __name__ == "__main__":
    main()
