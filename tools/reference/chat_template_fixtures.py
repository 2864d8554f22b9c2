#!/usr/bin/env python3
"""Renders chat-message layouts with HF's apply_chat_template using the Qwen3-VL Instruct and
Thinking templates from src/chat/templates.h, and writes tests/fixtures/chat/templates.json.

Run with the pinned reference environment (tools/reference/requirements.txt):
    python tools/reference/chat_template_fixtures.py
Prints the sha256 of the file it wrote. Never edit the output by hand.
"""
import hashlib
import json
import pathlib
import re

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT.parent / "shared" / "data" / "qwen3-tokenizer"
OUT = ROOT / "tests" / "fixtures" / "chat" / "templates.json"


def templates():
    src = (ROOT / "src" / "chat" / "templates.h").read_text()
    found = dict(re.findall(r'inline constexpr const char\* (\w+) = R"JINJA\((.*?)\)JINJA";', src, re.S))
    return {"instruct": found["kQwen3VLInstructTemplate"], "thinking": found["kQwen3VLThinkingTemplate"]}


IMG = {"type": "image", "image": "a.png"}
IMG_URL = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
VID = {"type": "video", "video": "clip.mp4"}


def T(s):
    return {"type": "text", "text": s}


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city — ünïcode",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                     "days": {"type": "integer", "default": 3},
                                                     "scale": {"type": "number", "default": 0.5}},
                                                     "required": ["city"]}}},
]

LAYOUTS = [
    ("text_only", [{"role": "user", "content": "Hello!"}], {}),
    ("system_and_user", [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "Hi"}], {}),
    ("one_image", [{"role": "user", "content": [IMG, T("What is in this image?")]}], {}),
    ("two_images", [{"role": "user", "content": [IMG, IMG_URL, T("Compare them.")]}], {}),
    ("text_image_text", [{"role": "user", "content": [T("Look: "), IMG, T(" and describe.")]}], {}),
    ("video", [{"role": "user", "content": [VID, T("What happens?")]}], {}),
    ("multi_turn", [{"role": "system", "content": [T("Be brief.")]},
                    {"role": "user", "content": [IMG, T("What animal is this?")]},
                    {"role": "assistant", "content": "A dog."},
                    {"role": "user", "content": "What color is it?"}], {}),
    ("assistant_list_content", [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": [T("Hello "), T("there.")]},
                                {"role": "user", "content": [T("Now this:"), IMG]}], {}),
    ("vision_ids", [{"role": "user", "content": [IMG, VID, IMG, T("Which is which?")]},
                    {"role": "assistant", "content": "First is a cat."},
                    {"role": "user", "content": [IMG, T("And this?")]}], {"add_vision_id": True}),
    ("no_generation_prompt", [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
     {"add_generation_prompt": False}),
    ("late_system", [{"role": "user", "content": "Q1"}, {"role": "system", "content": "New rule."},
                     {"role": "user", "content": "Q2"}], {}),
    ("tools", [{"role": "system", "content": "You can call tools."},
               {"role": "user", "content": "Weather in Zürich?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2, "scale": 1e-05}}},
                   {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Bern\"}"}}]},
               {"role": "tool", "content": "{\"temp\": 3}"},
               {"role": "tool", "content": [T("sunny "), IMG]},
               {"role": "user", "content": "Thanks"}], {"tools": TOOLS}),
    ("tools_no_system", [{"role": "user", "content": "Call it"},
                         {"role": "assistant", "content": "Sure.", "tool_calls": [
                             {"name": "f", "arguments": {"x": [1, 2.5, True, None]}}]}], {"tools": TOOLS}),
    ("thinking_history", [{"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
                          {"role": "user", "content": [IMG, T("and this?")]},
                          {"role": "assistant", "reasoning_content": "\nlook at it\n", "content": "A cat."}],
     {"add_generation_prompt": False}),
    ("thinking_final_turn", [{"role": "user", "content": "Q"},
                             {"role": "assistant", "content": "<think>r1</think>answer"},
                             {"role": "user", "content": "<tool_response>x</tool_response>"},
                             {"role": "assistant", "content": "plain"}], {"add_generation_prompt": False}),
    ("unicode_and_controls", [{"role": "user", "content": "naïve café 日本語 🙂\ttab\nline"}], {}),
]


def main():
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER / "tokenizer.json"))
    cases = []
    for kind, tmpl in templates().items():
        for name, messages, opts in LAYOUTS:
            kwargs = {"add_generation_prompt": opts.get("add_generation_prompt", True)}
            if "tools" in opts:
                kwargs["tools"] = opts["tools"]
            if opts.get("add_vision_id"):
                kwargs["add_vision_id"] = True
            text = tok.apply_chat_template(messages, chat_template=tmpl, tokenize=False, **kwargs)
            cases.append({"name": name, "template": kind, "messages": messages,
                          "options": {"add_generation_prompt": kwargs["add_generation_prompt"],
                                      "add_vision_id": bool(opts.get("add_vision_id")),
                                      "tools": opts.get("tools")},
                          "expected": text})
    doc = {"generator": "tools/reference/chat_template_fixtures.py",
           "transformers": transformers.__version__, "cases": cases}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print(f"{OUT.relative_to(ROOT)} {len(cases)} cases sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
