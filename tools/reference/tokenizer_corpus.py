"""The text corpus that the tokenizer references encode (shared by make_tokenizer_refs.py and the
benchmark text generator). Each entry exercises something a tokenizer can get wrong."""

SPECIALS = ("<|begin_of_text|> <|eot_id|> <|im_start|>user\nhi<|im_end|> <bos><start_of_turn>model "
            "<end_of_turn> [CLS] [SEP] [MASK] <mask> <unk> <pad> <|endoftext|>")

CORPUS = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you doing today?",
    " leading space",
    "trailing space ",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! it's, we'll, they're, I'd, you've, I'M",
    "Don't stop believin'. He said: \"It's fine\" -- and left... (maybe) [really] {sure}",
    "   multiple   spaces    between     words   ",
    "tabs\tand\t\ttabs\t\t\tend\t",
    "line one\nline two\n\nline four\n\n\n\nend\n",
    "windows\r\nline\r\nendings\r\n\r\n",
    "old mac\rline\rendings",
    "mixed \t \n \r\n  \u00a0 \u2003 whitespace \u3000 runs",
    " " * 40 + "x" + "\n" * 20 + "y" + "\t" * 17,
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0; // done\n}\n",
    "for (let i = 0; i < arr.length; ++i) { sum += arr[i] ** 2; } /* comment */ x=>x*2 !== null",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%';",
    "<div class=\"a\"><p>HTML &amp; entities &lt;tag&gt; &#x27;</p></div>",
    "{\"json\": [1, 2.5, -3e10, true, null], \"nested\": {\"k\": \"v\"}}",
    "Numbers: 0 1 12 123 1234 12345 123456789 3.14159 -42 1,000,000 1e-9 0x1F 2024-06-01 12:30:45",
    "Phone +1 (555) 123-4567, email john.doe@example.com, url https://example.com/path?q=1&r=2#frag",
    "Français: À bientôt, garçon! Ça va? Élève, naïve, cœur, Œuvre.",
    "Deutsch: Größe, Straße, Übermäßig, Äpfel und Öl.",
    "Español: ¿Dónde está la estación? ¡Mañana! niño, año.",
    "Polski: Zażółć gęślą jaźń. Čeština: Příliš žluťoučký kůň.",
    "Tiếng Việt: Tôi yêu tiếng Việt rất nhiều. Hôm nay trời đẹp.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Ω ω ς σ",
    "中文：我爱自然语言处理。今天天气很好，我们去公园散步吧！",
    "日本語：いろはにほへと ちりぬるを。カタカナとひらがな、漢字。ｶﾀｶﾅ半角",
    "한국어: 다람쥐 헌 쳇바퀴에 타고파. 안녕하세요!",
    "العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر.",
    "עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले।",
    "বাংলা: আমি বাংলায় গান গাই। தமிழ்: யாமறிந்த மொழிகளிலே. తెలుగు: నమస్కారం",
    "ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า. ລາວ: ສະບາຍດີ. ខ្មែរ: សួស្តី",
    "ქართული: ქართული ენა. Հայերեն: Բարեւ. አማርኛ: ሰላም ልዑል",
    "Emoji: 😀😃😄 👍🏽 ❤️ 🇺🇸🇯🇵 👨‍👩‍👧‍👦 👩🏻‍💻 🏳️‍🌈 ✈︎ 1️⃣ 🫠",
    "Math: ∀x ∈ ℝ, ∃y: x² + y² ≤ 1 ⇒ √(x·y) ≠ ∞; ∑ᵢ aᵢ ∫ f(x) dx ≈ π ± ε",
    "Symbols: © ® ™ § ¶ † ‡ • … ‰ ′ ″ € £ ¥ ₹ ₿ « » „ “ ” ‘ ’ ‹ › — – ‐",
    "Combining: e\u0301 a\u0308 n\u0303 \u0041\u030a vs é ä ñ Å; ﬁ ﬂ ﬀ ① ⅷ ㎏ Ⅻ ｆｕｌｌｗｉｄｔｈ",
    "Control chars: \x00 \x01 \x07 \x08 \x0b \x0c \x1b[31mred\x1b[0m \x7f \u200b \u200c \u200d \ufeff \u2028 \u2029",
    "Private use and rare: \ue000 \U000f0000 \U00010348 \U0001d11e \U0001f9ec 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    SPECIALS,
    "User text with specials inside: <|im_start|>system<|im_end|>, <start_of_turn>user and <eos>, <|eot_id|>!",
    "near-specials: <|im_start <im_start|> <|endoftext| <bo s> [CLS [SEP]] <<bos>>",
    "a" * 300,
    "supercalifragilisticexpialidocious " * 3 + "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" + "yz" * 500,
    "🙂" * 50,
    "Ａｂｃ ＡＢＣ ｘｙｚ ﾊﾝｶｸ ＡＢＣ１２３",
    "CamelCaseIdentifiers and snake_case_names and kebab-case-names and SCREAMING_CASE",
    "'s 's 'S 'LL 't 've 're 'm 'd don't I'LL YOU'RE",
    "Mr. O'Neil's dog's bone; the dogs' bones; rock 'n' roll",
    "   \n   \n",
    "\n",
    "\t",
    "hello\u00a0world\u202fnarrow\u2009thin",
    "Mixed 中文 and English and 日本語 and 한국어 in one sentence, 123 数字 456.",
    "    indented code\n        more indented\n\tTabbed\n  \t mixed",
    "Unicode quotes “like this” and ‘this’ and «this» and „this“.",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND PUNCTUATION!!!",
    "lowercase sentence without punctuation",
    "...,,,;;;:::!!!???---___===+++***&&&^^^%%%$$$###@@@~~~```|||\\\\\\///",
]

TRAIN_TEXT = """It is a truth universally acknowledged, that a single man in possession of a good fortune,
must be in want of a wife. However little known the feelings or views of such a man may be on his
first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding
families, that he is considered the rightful property of some one or other of their daughters.
Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,
and nothing particular to interest me on shore, I thought I would sail about a little and see the
watery part of the world. It was the best of times, it was the worst of times, it was the age of
wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.
In the beginning God created the heaven and the earth. And the earth was without form, and void;
and darkness was upon the face of the deep. The programmer wrote 42 functions in 2024 and tested
them 1000 times; the results were consistent, reproducible and fast.
"""
