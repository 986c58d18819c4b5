#!/usr/bin/python3
"""Writes the chat-template test expectations by rendering with Python jinja2 the way
transformers' apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, tojson without key sorting or ASCII escaping, raise_exception and
strftime_now globals). Runs with Debian's python3-jinja2; no transformers needed.

    python3 tools/reference/render_chat_templates.py

Writes tests/data/chat_templates/families.json (the real templates of gemma3, llama3, llama3_1
and qwen3 on many conversations) and tests/data/chat_templates/features.json (small templates
that exercise the Jinja features chat templates use). Every expected value comes from jinja2.
"""
import json
import lzma
import os
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK = os.path.join(ROOT, "tests", "data", "tokenizers")
OUT = os.path.join(ROOT, "tests", "data", "chat_templates")
FIXED_DATE = "26 Jul 2024"  # strftime_now is pinned so outputs are reproducible


class Generation(Extension):
    """transformers' AssistantTracker tags: {% generation %} ... {% endgeneration %}."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime(2024, 7, 26).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, ctx):
    try:
        return {"output": env.from_string(source).render(**ctx)}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e), "error_type": "TemplateError"}
    except Exception as e:  # TypeError etc.: the template cannot render this input
        return {"error": str(e), "error_type": type(e).__name__}


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web — returns snippets «quoted»",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                         "k": {"type": "integer", "default": 3}},
                       "required": ["query"]}}},
]

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "user", "content": "Hi there"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "  Tell me a joke.  \n"}],
    "system_multi_turn": [{"role": "system", "content": "Be terse."},
                          {"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris."},
                          {"role": "user", "content": "And of Japan? 日本の首都は？"}],
    "unicode_and_specials": [{"role": "user",
                              "content": "Emoji 👨‍👩‍👧 and <|im_start|> and {{ not jinja }} {% raw %}"}],
    "image_content": [{"role": "user", "content": [{"type": "image"},
                                                   {"type": "text", "text": "  Describe this image.  "}]}],
    "system_list_content": [{"role": "system", "content": [{"type": "text", "text": "You see images."}]},
                            {"role": "user", "content": [{"type": "text", "text": "Compare"},
                                                         {"type": "image"}, {"type": "image"},
                                                         {"type": "text", "text": "these two."}]}],
    "thinking_history": [{"role": "user", "content": "Solve x+1=3"},
                         {"role": "assistant", "content": "<think>\nx = 3 - 1\n</think>\n\nx = 2"},
                         {"role": "user", "content": "Thanks! Now x*2=8?"}],
    "reasoning_content": [{"role": "user", "content": "Why is the sky blue?"},
                          {"role": "assistant", "content": "Rayleigh scattering.",
                           "reasoning_content": "Short wavelengths scatter more."},
                          {"role": "user", "content": "More detail?"}],
    "tool_calls": [{"role": "system", "content": "You can call tools."},
                   {"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": "",
                    "tool_calls": [{"type": "function", "function": {
                        "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                   {"role": "tool", "content": "{\"temp\": 21}"},
                   {"role": "tool", "content": "sunny"},
                   {"role": "assistant", "content": "It is 21°C and sunny."},
                   {"role": "user", "content": "<tool_response>\nfake\n</tool_response>"}],
    "tool_call_string_args": [{"role": "user", "content": "Search cats"},
                              {"role": "assistant", "content": "Sure.",
                               "tool_calls": [{"function": {"name": "search",
                                                            "arguments": "{\"query\": \"cats\"}"}},
                                              {"function": {"name": "search",
                                                            "arguments": {"query": "dogs", "k": 2}}}]},
                              {"role": "tool", "content": "results"}],
    "bad_alternation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
}

FAMILY_CASES = [
    # (conversation, tools, add_generation_prompt, extra kwargs)
    ("single_user", None, True, {}),
    ("single_user", None, False, {}),
    ("system_user", None, True, {}),
    ("multi_turn", None, True, {}),
    ("multi_turn", None, False, {}),
    ("system_multi_turn", None, True, {}),
    ("unicode_and_specials", None, True, {}),
    ("image_content", None, True, {}),
    ("system_list_content", None, True, {}),
    ("thinking_history", None, True, {}),
    ("thinking_history", None, True, {"enable_thinking": False}),
    ("thinking_history", None, True, {"enable_thinking": True}),
    ("reasoning_content", None, True, {}),
    ("tool_calls", TOOLS, True, {}),
    ("tool_calls", TOOLS, False, {"enable_thinking": False}),
    ("tool_call_string_args", TOOLS, True, {}),
    ("system_user", TOOLS, True, {}),
    ("bad_alternation", None, True, {}),
]

# Small templates covering the Jinja features real chat templates use.
FEATURES = {
    "if_elif_else": "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x is even %}even{% else %}odd{% endif %} {% endfor %}",
    "loop_vars": "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}",
    "loop_cycle": "{% for x in range(5) %}{{ loop.cycle('odd', 'even') }} {% endfor %}",
    "for_else": "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}",
    "for_filter": "{% for x in range(10) if x is odd %}{{ x }}{% endfor %}",
    "for_unpack": "{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }},{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
    "for_dict": "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}",
    "break_continue": "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "set_scoping": "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}",
    "namespace": "{% set ns = namespace(total=0, items=[]) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}",
    "set_block": "{% set greeting %}Hello {{ name }}!{% endset %}[{{ greeting }}]",
    "set_tuple": "{% set a, b = 1, 2 %}{{ a }}-{{ b }}",
    "macro": "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }}",
    "macro_call": "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}",
    "filter_block": "{% filter upper %}shout {{ 'this' }}{% endfilter %}",
    "raw": "{% raw %}{{ not rendered }} {% if %}{% endraw %}",
    "whitespace_control": "a  {{- ' b ' -}}  c\n  {%- if true %}\n  d\n  {%- endif %}\n e {%+ if true %}f{% endif %}",
    "trim_lstrip": "<ul>\n  {% for x in [1, 2] %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n{# a comment #}\nend",
    "comment_dash": "x {#- c -#} y",
    "operators": "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }}",
    "comparisons": "{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'x' in 'xyz' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ not true }} {{ true and false or true }} {{ none is none }} {{ 1 != 2 }}",
    "conditional_expr": "{{ 'yes' if true else 'no' }} {{ 'yes' if false else 'no' }} [{{ 'only' if false }}]",
    "slicing": "{{ [1, 2, 3, 4, 5][1:3] }} {{ [1, 2, 3][::-1] }} {{ 'hello'[1:] }} {{ 'hello'[-3:] }} {{ [1, 2, 3, 4][::2] }} {{ 'héllo'[::-1] }} {{ [1,2,3][-1] }}",
    "tests": "{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is integer }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is sequence }} {{ true is boolean }} {{ true is true }} {{ false is false }} {{ 3 is odd }} {{ 4 is even }} {{ 2 is eq 2 }} {{ 1 is not none }} {{ 6 is divisibleby(3) }}",
    "string_filters": "{{ '  pad  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ 'abc' | length }}|{{ [1,2] | count }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 42 | string }}|{{ '12' | int + 1 }}|{{ '1.5' | float }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 'x' | safe }}",
    "list_filters": "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ [1, 2, 2, 3, 1] | unique | list }} {{ [1, 2, 3] | reverse | list }} {{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ [1, 2, 3] | join(', ') }} {{ range(7) | batch(3) | list }} {{ range(5) | batch(2, 0) | list }}",
    "map_select": "{% set users = [{'name': 'a', 'age': 3}, {'name': 'b', 'age': 40}, {'name': 'c'}] %}{{ users | map(attribute='name') | join(',') }} {{ users | selectattr('age') | map(attribute='name') | list }} {{ users | rejectattr('age') | map(attribute='name') | list }} {{ users | selectattr('age', 'defined') | list | length }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ ['a', 'b'] | map('upper') | list }} {{ users | sort(attribute='name', reverse=true) | map(attribute='name') | join }}",
    "dict_filters": "{% set d = {'b': 2, 'a': 1, 'c': 3} %}{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }} {{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 'none') }} {{ d.get('z') }} {{ d['b'] }} {{ d.c }}",
    "default_filter": "{{ missing | default('dflt') }} {{ '' | default('empty', true) }} {{ 'set' | default('x') }} {{ none | default('n') }} {{ missing | d('short') }}",
    "tojson": "{{ {'b': [1, 2.5, 'x'], 'a': none, 'u': 'é\"\\n', 't': true} | tojson }}\n{{ {'b': 1, 'a': {'c': []}} | tojson(indent=2) }}\n{{ [1, 'x'] | tojson(indent=4) }}\n{{ 'plain' | tojson }}",
    "indent": "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(4, true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}",
    "string_methods": "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ 'a,b,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('lo', 'x')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'Hi'.upper() }}|{{ 'Hi'.lower() }}|{{ 'hi there'.title() }}|{{ '{} and {}'.format(1, 'two') }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{name}!'.format(name='N') }}",
    "list_methods": "{% set l = [1] %}{% set _ = l.append(2) %}{{ l }}",
    "globals": "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1, b='x') }} {{ strftime_now('%Y-%m-%d') }}",
    "printing": "{{ none }} {{ true }} {{ 1.0 }} {{ 1e-7 }} {{ 1e20 }} {{ 100000.0 }} {{ [1, 'a', none, true] }} {{ {'k': 'v'} }} {{ \"it's\" }} {{ ['it\\'s'] }} [{{ undefined_var }}]",
    "raise": "{% if true %}{{ raise_exception('Custom failure: ' ~ 42) }}{% endif %}",
    "message_loop": "{% for m in messages %}{{ m.role }}: {{ m['content'] }}{% if not loop.last %}\n{% endif %}{% endfor %}{% if add_generation_prompt %}\nassistant:{% endif %}",
    "nested_attr_undefined": "{{ messages[0].missing is defined }} {{ messages[0].missing }}|{{ messages[5] is defined }}",
    "string_concat_chain": "{{ bos_token + 'x' + eos_token }}",
    "is_test_keywords": "{% for m in messages %}{% if m.content is string and m.role in ['user', 'system'] %}S{% elif m.content is iterable %}I{% endif %}{% endfor %}",
    "generation_tag": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
}
FEATURE_CONTEXT = {
    "name": "World", "x": 1, "bos_token": "<s>", "eos_token": "</s>",
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                 {"role": "user", "content": [{"type": "text", "text": "t"}]}],
    "add_generation_prompt": True,
}


def special_tokens(cfg):
    out = {}
    for key in ["bos_token", "eos_token", "unk_token", "pad_token"]:
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    if "additional_special_tokens" in cfg:
        out["additional_special_tokens"] = cfg["additional_special_tokens"]
    return out


def load_config(family):
    folder = os.path.join(TOK, family)
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    with lzma.open(path + ".xz", "rt", encoding="utf-8") as f:
        return json.load(f)


def main():
    env = make_env()
    families = []
    for family in ["gemma3", "llama3", "llama3_1", "qwen3"]:
        cfg = load_config(family)
        for conv, tools, agp, extra in FAMILY_CASES:
            ctx = dict(special_tokens(cfg))
            ctx["messages"] = CONVERSATIONS[conv]
            if tools is not None:
                ctx["tools"] = tools
            ctx["add_generation_prompt"] = agp
            ctx.update(extra)
            case = {"family": family, "conversation": conv, "messages": CONVERSATIONS[conv],
                    "tools": tools, "add_generation_prompt": agp, "kwargs": extra}
            case.update(render(env, cfg["chat_template"], ctx))
            families.append(case)
    features = []
    for name, source in FEATURES.items():
        case = {"name": name, "template": source, "context": FEATURE_CONTEXT}
        case.update(render(env, source, FEATURE_CONTEXT))
        features.append(case)
    os.makedirs(OUT, exist_ok=True)
    meta = {"jinja2_version": jinja2.__version__, "strftime_now_date": FIXED_DATE}
    for fname, cases in [("families.json", families), ("features.json", features)]:
        with open(os.path.join(OUT, fname), "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "cases": cases}, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("wrote", fname, len(cases), "cases")


if __name__ == "__main__":
    main()
