#!/usr/bin/env python3
"""Expected token ids from llama.cpp's `llama-tokenize`, for tessera-tokenizer's
parity tests (crates/tessera-tokenizer/tests/llama_cpp_parity.rs).

Writes, under crates/tessera-tokenizer/tests/fixtures/:
  corpus.json        the test strings (defined below, ~350 of them: prose, code,
                     numbers, whitespace, emoji/ZWJ, CJK, RTL, combining marks,
                     invalid-looking sequences, special-token text)
  <vocab>.json       for each vocabulary: the ids llama-tokenize prints for each
                     string (BOS as the model wants it, special tokens parsed:
                     llama-tokenize's defaults), the ids with --no-parse-special
                     where they differ, and the special ids llama.cpp reports.

Vocabularies:
  smollm2            SmolLM2-135M-Instruct.Q4_1.gguf (gpt2 / pre smollm)
  gemma3             gemma-3-270m-q4_k_m.gguf (llama / SentencePiece)
  synth-builtin      tessera-synth's built-in byte-level vocabulary (pre gpt-2)
  chat-<model>.json  a 3-turn conversation with a system prompt rendered by
                     llama.cpp's --jinja path (llama-server /apply-template):
                     SmolLM2 with its own template, Gemma 3 (whose GGUF has no
                     template) with the Gemma 3 template tessera falls back to
                     (crates/tessera-tokenizer/src/templates/gemma3.jinja).

  smollm2-pre-<pre>  SmolLM2's vocabulary and merges with tokenizer.ggml.pre
                     rewritten (gguf-new-metadata), one per pre-tokenizer in
                     PRE_VARIANTS: tests the split regexes against llama.cpp's.
                     To keep the fixtures small these store, per string, the
                     token count and an FNV-1a 64 hash of the ids.

Each string is passed verbatim with -f FILE --no-escape. Needs the model cache
(scripts/fetch-models.sh), the reference llama.cpp (LLAMA_BIN, default
~/.cache/tessera-ref/llama-cpp-python-0.3.36/build/bin), gguf-py
(scripts/py-env.sh, for gguf-new-metadata) and cargo (for tessera-synth).

  scripts/make-tokenizer-fixtures.py [--jobs 2] [--only smollm2,gemma3]
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/tessera-tokenizer/tests/fixtures"
HOME = Path.home()
MODELS = Path(os.environ.get("TESSERA_MODELS", HOME / ".cache/tessera/models"))
LLAMA_BIN = Path(
    os.environ.get("LLAMA_BIN", HOME / ".cache/tessera-ref/llama-cpp-python-0.3.36/build/bin")
)
VENV_BIN = HOME / ".cache/tessera/venv/bin"

PRE_VARIANTS = [
    "default",
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "deepseek-llm",
    "deepseek-v3",
    "gpt-4o",
    "glm4",
    "olmo",
    "tekken",
    "falcon",
    "starcoder",
    "bloom",
    "chameleon",
    "youtu",
    "qwen35",
    "jais-2",
    "exaone-moe",
    "bailingmoe",
    "seed-coder",
    "minicpm5",
    "laguna",
    "deepseek-coder",
    "granite-embed-multi-97m",
]


def corpus():
    """The test strings: (category, text)."""
    out = []

    def add(cat, *texts):
        for t in texts:
            out.append((cat, t))

    add(
        "prose",
        "Hello world",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
        "I'm sure you're right; they've said we'd go, and I'll come. Don't worry, it isn't far.",
        "SHOUTING IT'S LOUD, WE'RE HERE, THEY'VE GONE, YOU'LL SEE, HE'D KNOW, I'M FINE.",
        "Mixed 'S 'T 'Re 'VE 'm 'LL 'D contractions",
        "She said, \"Hello there.\" Then she left -- without a word.",
        "Question? Exclamation! Ellipsis... Semicolon; colon: dash - en–dash em—dash.",
        "(parentheses) [brackets] {braces} <angles>",
        "e.g. i.e. etc. vs. Mr. Mrs. Dr. St. U.S.A.",
        "A sentence with a trailing space ",
        " a sentence with a leading space",
        "Tokenization is the process of splitting text into tokens; tokens are then mapped to ids.",
        "naïve café résumé coöperate façade jalapeño",
        "Ünïcödé Àççéñts in Frånçaïs and Español: ¿Qué tal? ¡Muy bien!",
        "The year 1984 was not like 1984.",
        "''quoted'' ``backticks'' „German“ «French» ‹single›",
        "O'Neil's rock'n'roll y'all'd've",
        "a",
        "A",
        "'",
        "'s",
        "'S",
        "''",
        "I",
        "hello",
        " hello",
        "  hello",
        "Hello World HELLO world hElLo",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
        "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "the the the the the the the the",
        "Τhe Greek Τ looks Latin; Сyrillic С too.",
    )
    add(
        "code",
        "def add(a, b):\n    return a + b\n",
        "fn main() {\n    println!(\"Hello, {}!\", name);\n}",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "const x = (a, b) => a ?? b;\nlet y = x?.z ?? [];",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
        "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
        "<div class=\"container\"><p>Hello</p></div>",
        "if [ -f \"$FILE\" ]; then\n\techo \"found\" | grep -v x > /dev/null 2>&1\nfi",
        "x = re.compile(r'^\\s*(\\d+)\\s*$')",
        "class Foo(Bar):\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n",
        "impl<T: Clone + Send> Trait for Vec<T> where T: 'static {}",
        "    indented four\n        indented eight\n\tone tab\n\t\ttwo tabs",
        "a==b!=c<=d>=e&&f||g::h->i=>j",
        "x+=1;y-=2;z*=3;w/=4;v%=5;u**=6;t//=7",
        "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n",
        "// comment\n/* block\n   comment */\n/// doc comment",
        "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)",
        "git commit -m \"fix: handle edge case\" && git push origin main",
        "matrix[i][j] = matrix[i-1][j-1] + 1 if s[i] == t[j] else 0",
        "print(f\"{value:>10.3f} {name!r}\")",
        "<?php echo $var; ?>",
        "SELECT * FROM t WHERE s LIKE '%abc%';",
        "@decorator\ndef f(): pass",
        "```python\nprint('hi')\n```",
        "std::vector<std::string> v{\"a\", \"b\"};",
        "let mut s = String::new(); s.push_str(\"x\"); // ok",
        "0x7fffffff & ~0xFF | 1 << 3 ^ 0b1010",
        "key: value\nlist:\n  - item1\n  - item2\n",
        "[section]\nname = \"tessera\"\nversion = \"0.1.0\"",
        "$ cargo test --release -- --nocapture",
        "function f() {\r\n  return 1;\r\n}\r\n",
        "a\\b\\c \\n \\t \\\\ \\x41",
        "if(x){y();}else{z();}",
        "__init__ __name__ _private __dunder__",
        "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
    )
    digits = "12345678901234567890"
    add("numbers", *[digits[:n] for n in range(1, 21)])
    add(
        "numbers",
        "3.14159",
        "1,000,000",
        "1 000 000",
        "-42",
        "+1 (555) 123-4567",
        "2024-01-15T12:34:56Z",
        "6.02e23",
        "1e-10",
        "v1.2.3-beta.4",
        "abc123def456",
        "123abc",
        "0.0001",
        "100%",
        "$1,234.56",
        "１２３４５",
        "٠١٢٣٤٥٦٧٨٩",
        "१२३४",
        "x² + y³ = z¹⁰",
        "Ⅻ Ⅳ ⅷ",
        "½ ¼ ¾ ⅓",
        "①②③",
        "007",
        "0000000000",
        "9999 99999 999999",
        "1st 2nd 3rd 4th",
        "IPv4 192.168.0.1 port 8080",
    )
    add(
        "whitespace",
        " ",
        "  ",
        "   ",
        "\t",
        "\n",
        "\r\n",
        "\n\n",
        "\n\n\n",
        " \n",
        "\n ",
        "a b",
        "a  b",
        "a   b",
        "a    b",
        "a\tb",
        "a\t\tb",
        "a\nb",
        "a\n\nb",
        "a \n b",
        "a\r\nb",
        "trailing   ",
        "   leading",
        "a" + " " * 30 + "b",
        "a" + " " * 31 + "b",
        "a" + " " * 32 + "b",
        "a" + " " * 33 + "b",
        " " * 40,
        "\t" * 31,
        "\t" * 32 + "x",
        "\n" * 31,
        "\n" * 32 + "x",
        "x" + "\n" * 40,
        " \t \n \r \x0b \x0c ",
        "word\u00a0word",
        "word\u3000word",
        "word\u2003word\u2009word",
        "word\u0085word",
        "line\u2028sep\u2029para",
        "\n  \n  \n",
        "\t\n\t\n",
        "    def f():\n        pass\n\n\n    x = 1",
        " \u00a0 \u00a0 ",
        "a\u200bb",
    )
    add(
        "emoji",
        "👍",
        "👍🏽",
        "👍🏿 👍🏻",
        "👨‍👩‍👧‍👦",
        "👨‍💻 👩‍🔬 🧑‍🚀",
        "🏳️‍🌈",
        "🏴‍☠️",
        "🇫🇷🇯🇵🇺🇸",
        "1️⃣ #️⃣ *️⃣",
        "❤️ ♥ ❤",
        "I ❤️ tokenizers 🚀🚀🚀",
        "😀😃😄😁😆😅😂🤣",
        "🫠 🪿 🫨",
        "emoji at end 🙂",
        "🙂 emoji at start",
        "mid🙂dle",
        "☕️☕",
        "✅ ❌ ⚠️",
        "👁️‍🗨️",
        "🧔🏾‍♀️",
        "©️ ®️ ™️",
        "🔥" * 10,
        "👩🏽‍❤️‍💋‍👨🏿",
        "⌚⌛⏰",
        "🀄🃏",
    )
    add(
        "cjk",
        "你好，世界！",
        "我爱自然语言处理。",
        "中文分词是一个难题",
        "日本語のテキストです。",
        "ひらがな カタカナ 漢字",
        "東京タワーは高い",
        "안녕하세요, 세계!",
        "한국어 텍스트 처리",
        "Mixed 中文 and English text",
        "２０２４年１月１日",
        "「引用」『二重』（括弧）",
        "𠀀𠀁𠀂",
        "漢字123かな456",
        "ｈａｌｆｗｉｄｔｈ　ｆｕｌｌｗｉｄｔｈ",
        "ｶﾀｶﾅ ﾊﾝｶｸ",
        "中文 空格  测试",
        "繁體中文測試",
        "〇一二三四五六七八九十百千万",
        "コンピューター",
        "ㄅㄆㄇㄈ",
        "ᄀᄁᄂ ᅡᅢ",
        "李小龙 (Bruce Lee)",
        "這是一個很長的句子，用來測試分詞器在處理長篇中文時的表現。",
        "日本語と English の mix テキスト",
        "ㅋㅋㅋㅋ ㅎㅎ",
    )
    add(
        "rtl",
        "مرحبا بالعالم",
        "اللغة العربية جميلة",
        "شَكْلٌ عَرَبِيٌّ",
        "العدد ١٢٣ والعدد 456",
        "שלום עולם",
        "עִבְרִית מְנֻקֶּדֶת",
        "Hello مرحبا שלום mixed",
        "\u200fRTL mark\u200e LTR mark",
        "فارسی: سلام دنیا",
        "اردو: ہیلو دنیا",
        "ﷲ ﷺ",
        "ﻻ ﻷ",
        "قال: \"مرحبا\"، ثم ذهب.",
        "מספר 42 בעברית",
        "א ב ג ד ה",
        "ـــــ",
        "(قوسان) [معقوفان]",
        "العربية123عربي",
        "ܫܠܡܐ",
        "ދިވެހި",
    )
    add(
        "combining",
        "cafe\u0301",
        "caf\u00e9",
        "e\u0301\u0302\u0303\u0304",
        "Tiếng Việt có dấu",
        "Tie\u0302\u0301ng Vie\u0323\u0302t",
        "नमस्ते दुनिया",
        "क्षत्रिय",
        "สวัสดีชาวโลก",
        "ภาษาไทย",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
        " \u0301 combining on space",
        "\u0301leading combining",
        "a\u0308o\u0308u\u0308",
        "n\u0303",
        "ᄒ\u1161\u11ab",
        "বাংলা ভাষা",
        "தமிழ் மொழி",
        "ಕನ್ನಡ",
        "ગુજરાતી",
        "ਪੰਜਾਬੀ",
        "ລາວ",
        "ខ្មែរ",
        "မြန်မာ",
        "ⓐⓑⓒ",
    )
    add(
        "invalid-looking",
        "\ufffd",
        "\ufffd\ufffd\ufffd",
        "Ã©tÃ© mojibake",
        "\u0080\u0081\u009f",
        "\ufeffBOM at start",
        "null\u0000byte",
        "\u0001\u0002\u0003\u001b[31mred\u001b[0m",
        "\u001c\u001d\u001e\u001f",
        "\uffff\ufffe",
        "\U0010ffff",
        "\ue000\uf8ff",
        "\U000f0000",
        "\ufdd0",
        "\u0378\u0379",
        "\\xff\\xfe\\x00",
        "<0x0A>",
        "<0xFF><0xFE>",
        "<0x00>",
        "%00%FF",
        "\\u0000 \\ud83d\\ude00",
        "\u00c0\u00af overlong-looking",
        "Ġ",
        "ĠĠĠ",
        "Ċ",
        "ĠhelloĊworld",
        "\u2581",
        "\u2581\u2581hello",
        "▁▁ x ▁",
        "\u00ad soft hyphen",
        "\u200d\u200c",
        "\u034f",
        "\U000e0001\U000e0041",
        "[UNK_BYTE_0x]",
    )
    add(
        "special",
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "abc<|endoftext|>def",
        "<|im_end|><|im_end|>",
        "<<|im_end|>>",
        "<|im_start",
        "<|im_start|",
        "im_start|>",
        " <|im_start|> ",
        "<repo_name>tessera<file_sep>src/lib.rs",
        "<filename>a.py<gh_stars>10",
        "<jupyter_code>x=1<jupyter_output>",
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>",
        "<end_of_turn>",
        "<bos>",
        "<eos>",
        "<pad>",
        "<unk>",
        "<mask>",
        "<unused0>",
        "<unused99>",
        "<s>text</s>",
        "</s>",
        "<table><tr><td>1</td></tr></table>",
        "<h1>Title</h1>",
        "<b>bold</b> and <i>italic</i>",
        "[multimodal]",
        "<start_of_image>",
        "<start_of_image><end_of_image>",
        "<bos><bos>",
        "text<eos>",
        "<start_of_turn><end_of_turn>",
        "<start_of_turn",
        "<|endoftext|><|endoftext|>  <|endoftext|>",
        "\n\n<|im_start|>\n\n",
        "<code>x</code>",
        "<|im_start|>system\nYou are helpful.<|im_end|>",
    )
    add(
        "mixed",
        "https://example.com/path?query=1&x=y#frag",
        "user.name+tag@example.co.uk",
        "# Heading\n\n* item **bold** _it_ `code`\n> quote",
        "$E = mc^2$ and \\frac{a}{b} \\sum_{i=0}^{n} x_i",
        "a" * 100,
        "!" * 20,
        "." * 30,
        "-" * 40,
        "=" * 25,
        "ab" * 30,
        "SGVsbG8gV29ybGQhIFRoaXMgaXMgYmFzZTY0Lg==",
        "550e8400-e29b-41d4-a716-446655440000",
        "d41d8cd98f00b204e9800998ecf8427e",
        "Ελληνικά γράμματα αβγδ",
        "Русский язык, съешь же ещё этих мягких французских булок",
        "Українська: ґ є ї",
        "ქართული ენა",
        "Հայերեն",
        "አማርኛ",
        "ᏣᎳᎩ",
        "Ωmega Ωhm ℃ ℉ № ™",
        "→ ← ↑ ↓ ⇒ ⇔ ∀ ∃ ∈ ∑ ∫ √ ∞ ≠ ≤ ≥",
        "♠♣♥♦ ♪♫ ☀☁☂",
        "¡¿«»‹›„“”‘’",
        "Mixed: English, 中文, العربية, עברית, русский, 日本語, 한국어, हिन्दी 🎉",
        "tab\tseparated\tvalues\n1\t2\t3",
        "comma,separated,values\n\"a, b\",c,d",
        "C:\\Users\\name\\file.txt",
        "/usr/local/bin/python3.11",
        "CamelCaseWordsAndACRONYMSAndNumbers123Together",
        "ALLCAPS lowercase Titlecase mIxEdCaSe",
        "ǅungla ǈub ǋaj",
        "ﬁ ﬂ ﬀ ﬃ",
        "Ⓐⓑ 🄰🄱",
        "x" * 300,
        "The quick brown fox. " * 20,
        "",
    )
    return out


def run_tokenize(model, text, parse_special, tmpdir):
    fd, path = tempfile.mkstemp(dir=tmpdir)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("utf-8"))
    cmd = [str(LLAMA_BIN / "llama-tokenize"), "-m", str(model), "-f", path, "--ids",
           "--log-disable", "--no-escape"]
    if not parse_special:
        cmd.append("--no-parse-special")
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=300)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
    lines = r.stdout.decode("utf-8").strip().split("\n")
    last = lines[-1] if lines else ""
    # The ids are the last line; a cut-short output would not end with ']'.
    if not (last.startswith("[") and last.endswith("]")):
        raise RuntimeError(f"{cmd}: incomplete output: {r.stdout[-200:]!r}")
    return json.loads(last)


def special_ids(model):
    """The special ids llama.cpp's print_info reports (llama-tokenize -v)."""
    fd, path = tempfile.mkstemp()
    os.write(fd, b"x")
    os.close(fd)
    r = subprocess.run([str(LLAMA_BIN / "llama-tokenize"), "-m", str(model), "-f", path,
                        "--ids", "-v"], capture_output=True)
    os.unlink(path)
    out = {"eog": []}
    names = {"BOS": "bos", "EOS": "eos", "EOT": "eot", "EOM": "eom", "UNK": "unk",
             "SEP": "sep", "PAD": "pad", "MASK": "mask", "LF": "nl", "FIM PRE": "fim_pre",
             "FIM SUF": "fim_suf", "FIM MID": "fim_mid", "FIM PAD": "fim_pad",
             "FIM REP": "fim_rep", "FIM SEP": "fim_sep"}
    for line in r.stderr.decode("utf-8", errors="replace").split("\n"):
        m = re.search(r"print_info: ([A-Z ]+?) token\s+= (\d+) ", line)
        if not m:
            continue
        if m.group(1) == "EOG":
            out["eog"].append(int(m.group(2)))
        elif m.group(1) in names:
            out[names[m.group(1)]] = int(m.group(2))
    return out


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{len(ids)}:{h:016x}"


def tokenize_all(model, texts, parse_special, jobs, tmpdir):
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        return list(ex.map(lambda t: run_tokenize(model, t, parse_special, tmpdir), texts))


def write_json(path, obj):
    """One list element per line, so diffs stay readable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(obj.items())
        for k, (key, val) in enumerate(items):
            sep = "," if k + 1 < len(items) else ""
            if isinstance(val, list) and len(val) > 8 and not isinstance(val[0], int):
                f.write(f"  {json.dumps(key)}: [\n")
                for j, v in enumerate(val):
                    comma = "," if j + 1 < len(val) else ""
                    f.write("    " + json.dumps(v, ensure_ascii=False, separators=(",", ":")) + comma + "\n")
                f.write(f"  ]{sep}\n")
            else:
                f.write(f"  {json.dumps(key)}: {json.dumps(val, ensure_ascii=False, separators=(',', ':'))}{sep}\n")
        f.write("}\n")


CHAT_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
    {"role": "user", "content": "Hello! Who are you?"},
    {"role": "assistant", "content": "I am a small language model running locally."},
    {"role": "user", "content": "What is 2 + 2?\nShow the sum."},
    {"role": "assistant", "content": " 2 + 2 = 4. "},
    {"role": "user", "content": "  And in words, with an emoji 🙂?  "},
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_with_llama_server(model, template_file, tmpdir):
    """Renders CHAT_MESSAGES through llama-server's /apply-template (--jinja)."""
    port = free_port()
    cmd = [str(LLAMA_BIN / "llama-server"), "-m", str(model), "--jinja", "--host", "127.0.0.1",
           "--port", str(port), "-c", "512", "-np", "1", "--no-webui"]
    if template_file:
        cmd += ["--chat-template-file", str(template_file)]
    log = open(tmpdir / f"server-{port}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"llama-server did not come up: {cmd}")
        out = {}
        for gen in (True, False):
            body = json.dumps({"messages": CHAT_MESSAGES, "add_generation_prompt": gen}).encode()
            req = urllib.request.Request(base + "/apply-template", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                out["with_generation_prompt" if gen else "without_generation_prompt"] = \
                    json.loads(r.read())["prompt"]
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def make_chat_fixtures(tmpdir):
    smollm2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gemma3 = MODELS / "gemma-3-270m-q4_k_m.gguf"
    gemma_tmpl = ROOT / "crates/tessera-tokenizer/src/templates/gemma3.jinja"
    for name, model, tmpl in [("smollm2", smollm2, None), ("gemma3", gemma3, gemma_tmpl)]:
        print(f"chat-{name}: rendering with llama-server", file=sys.stderr)
        prompts = render_with_llama_server(model, tmpl, tmpdir)
        write_json(FIXTURES / f"chat-{name}.json", {
            "model": model.name,
            "template": "tokenizer.chat_template of the model" if tmpl is None
            else f"{tmpl.relative_to(ROOT)} (the GGUF has no template)",
            "reference": "llama-server --jinja, POST /apply-template",
            "messages": CHAT_MESSAGES,
            **prompts,
        })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="comma-separated vocab names (or 'chat')")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    items = corpus()
    assert len(items) >= 300, len(items)
    texts = [t for _, t in items]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    write_json(FIXTURES / "corpus.json", {
        "note": "generated by scripts/make-tokenizer-fixtures.py; edit the script, not this file",
        "strings": [{"category": c, "text": t} for c, t in items],
    })
    print(f"corpus: {len(items)} strings", file=sys.stderr)

    r = subprocess.run([str(LLAMA_BIN / "llama-tokenize"), "--version"], capture_output=True)
    version = "llama.cpp " + " ".join(
        (r.stdout + r.stderr).decode(errors="replace").split("\n")[0].split()[1:])

    tmp = Path(tempfile.mkdtemp(prefix="tok-fixtures-"))
    try:
        if only is None or "chat" in only:
            make_chat_fixtures(tmp)
        smollm2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
        gemma3 = MODELS / "gemma-3-270m-q4_k_m.gguf"
        synth = tmp / "synth-builtin.gguf"
        vocabs = [("smollm2", smollm2, True), ("gemma3", gemma3, True)]
        if only is None or "synth-builtin" in only:
            subprocess.run(["cargo", "run", "-q", "--release", "-p", "tessera-testkit", "--bin",
                            "tessera-synth", "--", "--arch", "llama", "--vocab", "builtin",
                            "-o", str(synth)], check=True, cwd=ROOT)
        vocabs.append(("synth-builtin", synth, True))
        vocabs += [(f"smollm2-pre-{pre}", None, False) for pre in PRE_VARIANTS]

        for name, path, full in vocabs:
            if only is not None and name not in only:
                continue
            if path is None:
                pre = name[len("smollm2-pre-"):]
                path = tmp / f"{name}.gguf"
                subprocess.run([str(VENV_BIN / "gguf-new-metadata"), "--pre-tokenizer", pre,
                                "--force", str(smollm2), str(path)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"{name}: tokenizing {len(texts)} strings", file=sys.stderr)
            ids = tokenize_all(path, texts, True, args.jobs, tmp)
            result = {
                "model": path.name if full else
                f"SmolLM2-135M-Instruct.Q4_1.gguf with tokenizer.ggml.pre = {name[len('smollm2-pre-'):]}",
                "reference": f"llama-tokenize --ids --no-escape -f FILE ({version})",
                "special": special_ids(path),
            }
            if full:
                # --no-parse-special only changes strings with special-token text.
                cand = [i for i, t in enumerate(texts) if "<" in t or "[" in t]
                plain = tokenize_all(path, [texts[i] for i in cand], False, args.jobs, tmp)
                result["ids"] = ids
                result["ids_no_parse_special"] = {str(i): p for i, p in zip(cand, plain) if p != ids[i]}
            else:
                result["hashes"] = [fnv1a64(x) for x in ids]
                path.unlink()
            write_json(FIXTURES / f"{name}.json", result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
