#!/usr/bin/python3
"""Prompt-token expectations for the CLI tests of models/gemma3-tiny-echo (tests/cli/).

The chat template (from the model's tokenizer_config.json) is rendered with jinja2 the way
transformers' apply_chat_template does (render_chat_templates.make_env), and the text is encoded
with the echo tokenizer's pure-Python encoder (gemma3_refs.echo_encode, which the transformers run
of gemma3_refs.py checked against tokenizers). No mlxcpp code is involved. Runs with Debian's
python3 + python3-jinja2:

    /usr/bin/python3 tools/reference/echo_cli_refs.py

Writes tests/data/gemma3/copy_trained/cli_reference.json:
  system        --system-prompt: the ids of [system, user] with the generation prompt
  raw           --ignore-chat-template: <bos> + the text's ids
  cache_prompt  cache-prompt's user message cut after its content (continue_final_message) and the
                ids that generate appends for the rest of the message (mlx-lm's "<query>" rule)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from gemma3_refs import ECHO_BOS, echo_encode  # noqa: E402
from render_chat_templates import make_env  # noqa: E402

MODEL = os.path.join(ROOT, "models", "gemma3-tiny-echo")
OUT = os.path.join(ROOT, "tests", "data", "gemma3", "copy_trained", "cli_reference.json")


def main():
    cfg = json.load(open(os.path.join(MODEL, "tokenizer_config.json")))
    ref = json.load(open(os.path.join(os.path.dirname(OUT), "reference.json")))
    env = make_env()
    template = env.from_string(cfg["chat_template"])

    def render(messages, add_generation_prompt):
        return template.render(messages=messages, bos_token=cfg["bos_token"],
                               eos_token=cfg["eos_token"], add_generation_prompt=add_generation_prompt)

    s0 = ref["strings"][0]
    out = {}

    system = "be brief"
    text = render([{"role": "system", "content": system}, {"role": "user", "content": s0}], True)
    out["system"] = {"system": system, "user": s0, "text": text, "ids": echo_encode(text)}

    raw = "abc def"
    out["raw"] = {"text": raw, "ids": [ECHO_BOS] + echo_encode(raw)}

    # cache-prompt renders the first part as a user message and cuts the text after its content
    # (transformers' continue_final_message); generate then renders the template with "<query>"
    # as the content and encodes the rest of the message from the placeholder on.
    cut = s0.index(" ", 4)
    head, rest = s0[:cut], s0[cut:]
    full = render([{"role": "user", "content": head}], False)
    cached_text = full[:full.rindex(head) + len(head)]
    q = render([{"role": "user", "content": "<query>"}], True)
    suffix_text = rest + q[q.index("<query>") + len("<query>"):]
    cached_ids, suffix_ids = echo_encode(cached_text), echo_encode(suffix_text)
    assert cached_ids + suffix_ids == ref["prompt_tokens"][0], "split does not rebuild prompt 0"
    out["cache_prompt"] = {"head": head, "rest": rest, "cached_ids": cached_ids,
                           "suffix_ids": suffix_ids, "reply": s0}

    with open(OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
