// The book's models in the reader's browser: chapter 9's tokenizer playground, generation
// widgets (with the next-token probabilities and one block's attention) and chat. Written
// from scratch; the tokenizers must give exactly the Python tokenizers' ids.
// Loaded on every page (Jupyter Book includes every file of _static/); it does nothing on a page
// without a widget, and loads the runtime and a model only for a page with a generation widget.
(() => {
  "use strict";
  // This file is <site>/_static/llm_zero_web.js; the exported files are under <site>/web/.
  const ROOT = new URL("..", document.currentScript.src);
  const WEB = new URL("web/", ROOT);

  const fetchJSON = async (url) => {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url} could not be loaded (HTTP ${r.status})`);
    return r.json();
  };

  // ---- Tokenizers ----------------------------------------------------------------------------
  const utf8 = new TextEncoder();
  const bytesToKey = (bytes) => String.fromCharCode(...bytes);  // one char per byte: a Map key

  function escapeRegex(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  class CharTokenizer {
    // spec.itos: id -> token, the special ids after the characters; older exports have only chars.
    constructor(spec) {
      this.itos = spec.itos ?? [...spec.chars];
      this.stoi = new Map([...spec.chars].map((c, i) => [c, i]));
      this.unk = spec.unk_id ?? null;  // null: a legacy vocabulary without <|unk|> refuses
    }
    encode(text) {
      const ids = [];
      for (const ch of text) {  // code points, as Python iterates a str
        let id = this.stoi.get(ch);
        if (id === undefined) id = this.unk;
        if (id === null) {
          throw new Error(`the character ${JSON.stringify(ch)} is not in this model's vocabulary`);
        }
        ids.push(id);
      }
      return ids;
    }
    tokenText(id) { return this.itos[id]; }
    decoder() { return (id) => this.itos[id]; }
  }

  class BPETokenizer {
    // spec.ranks is tiktoken's format: one "<base64 token bytes> <id>" line per token.
    constructor(spec) {
      this.ranks = new Map();
      this.bytes = [];
      for (const line of spec.ranks.split("\n")) {
        const [b64, rank] = line.split(" ");
        const key = atob(b64);  // a "binary string": one char per byte
        this.ranks.set(key, Number(rank));
        this.bytes[Number(rank)] = Uint8Array.from(key, (c) => c.charCodeAt(0));
      }
      this.special = new Map(Object.entries(spec.special_tokens));
      for (const [s, id] of this.special) this.bytes[id] = utf8.encode(s);
      this.pattern = new RegExp(spec.pattern, "gu");
      const names = [...this.special.keys()].sort((a, b) => b.length - a.length);
      this.specialRe = names.length ? new RegExp(names.map(escapeRegex).join("|"), "g") : null;
    }
    encodeChunk(bytes, out) {
      const whole = this.ranks.get(bytesToKey(bytes));
      if (whole !== undefined) { out.push(whole); return; }
      // Chapter 2's loop: merge the adjacent pair whose merged bytes have the lowest rank.
      const parts = Array.from(bytes, (b) => String.fromCharCode(b));
      for (;;) {
        let best = Infinity, at = -1;
        for (let i = 0; i + 1 < parts.length; i++) {
          const r = this.ranks.get(parts[i] + parts[i + 1]);
          if (r !== undefined && r < best) { best = r; at = i; }
        }
        if (at < 0) break;
        parts.splice(at, 2, parts[at] + parts[at + 1]);
      }
      for (const p of parts) out.push(this.ranks.get(p));
    }
    encodeOrdinary(text, out) {
      for (const m of text.matchAll(this.pattern)) this.encodeChunk(utf8.encode(m[0]), out);
    }
    encode(text) {  // every special token is allowed, as in the playground's Python counterpart
      const out = [];
      let start = 0;
      if (this.specialRe) {
        for (const m of text.matchAll(this.specialRe)) {
          this.encodeOrdinary(text.slice(start, m.index), out);
          out.push(this.special.get(m[0]));
          start = m.index + m[0].length;
        }
      }
      this.encodeOrdinary(text.slice(start), out);
      return out;
    }
    tokenText(id) { return new TextDecoder().decode(this.bytes[id]); }
    decoder() {  // streaming: bytes of a character split over tokens wait for the rest
      const d = new TextDecoder();
      return (id) => d.decode(this.bytes[id], { stream: true });
    }
  }

  // BERT's WordPiece (chapter 2b): normalise, split into words and punctuation, longest match first.
  const CONTROL = /(?![\t\n\r])[\x00\ufffd\p{Cc}\p{Cf}\p{Co}\p{Cs}]/gu;
  const CJK = new RegExp("[\\u4e00-\\u9fff\\u3400-\\u4dbf\\u{20000}-\\u{2a6df}\\u{2a700}-\\u{2b73f}"
                         + "\\u{2b740}-\\u{2b81f}\\u{2b820}-\\u{2ceaf}\\uf900-\\ufaff\\u{2f800}-\\u{2fa1f}]", "gu");
  class WordPieceTokenizer {
    constructor(spec) {
      this.spec = spec;
      this.tokens = spec.vocab;
      this.vocab = new Map(spec.vocab.map((t, i) => [t, i]));
      this.maxChars = Math.max(...spec.vocab.map((t) => [...t].length));
      this.words = new RegExp(`[^\\p{White_Space}${spec.punctuation}]+|[${spec.punctuation}]`, "gu");
    }
    normalize(text) {
      const s = this.spec;
      text = text.replace(CONTROL, "").replace(/\p{White_Space}/gu, " ");
      if (s.handle_chinese_chars) text = text.replace(CJK, " $& ");
      if (s.strip_accents) text = text.normalize("NFD").replace(/\p{Mn}/gu, "");
      return s.lowercase ? text.replaceAll("Σ", "σ").toLowerCase() : text;  // no final-sigma rule
    }
    split(word) {  // code points, as Python counts them
      const s = this.spec, chars = [...word], pieces = [];
      if (chars.length > s.max_input_chars_per_word) return [this.vocab.get(s.unk_token)];
      for (let start = 0; start < chars.length;) {
        let end = Math.min(chars.length, start + this.maxChars), id;
        for (; end > start; end--) {
          id = this.vocab.get((start ? s.prefix : "") + chars.slice(start, end).join(""));
          if (id !== undefined) break;
        }
        if (end === start) return [this.vocab.get(s.unk_token)];
        pieces.push(id);
        start = end;
      }
      return pieces;
    }
    encode(text) {
      return [...this.normalize(text).matchAll(this.words)].flatMap((m) => this.split(m[0]));
    }
    tokenText(id) { return this.tokens[id]; }
  }

  // SentencePiece-style Unigram (chapter 2c): "▁" for spaces, the best segmentation by Viterbi.
  const METASPACE = "\u2581";
  class UnigramTokenizer {
    constructor(spec) {
      this.pieces = spec.pieces.map((p) => p[0]);
      this.scores = spec.pieces.map((p) => p[1]);
      this.unk = spec.unk_id;
      this.vocab = new Map(this.pieces.map((p, i) => [p, i]));
      this.prefixes = new Set();
      this.maxLen = 0;
      for (const p of this.pieces) {
        const cps = [...p];
        this.maxLen = Math.max(this.maxLen, cps.length);
        for (let k = 1; k < cps.length; k++) this.prefixes.add(cps.slice(0, k).join(""));
      }
      this.unkScore = Math.min(...this.scores) - 10;  // as chapter 2c, Hugging Face and SentencePiece
      this.byteIds = new Map();
      if (spec.byte_fallback) {
        this.pieces.forEach((p, i) => {
          const m = /^<0x([0-9A-F]{2})>$/.exec(p);
          if (m) this.byteIds.set(parseInt(m[1], 16), i);
        });
      }
    }
    segment(word) {
      const n = word.length, best = [0, ...Array(n).fill(-Infinity)], start = Array(n + 1).fill(0);
      const ids = Array(n + 1).fill(this.unk);
      const relax = (i, j, id, score) => {
        if (best[i] + score > best[j]) { best[j] = best[i] + score; start[j] = i; ids[j] = id; }
      };
      for (let i = 0; i < n; i++) {
        let s = "", single = false;
        for (let j = i + 1; j <= Math.min(n, i + this.maxLen); j++) {
          s += word[j - 1];
          const id = this.vocab.get(s);
          if (id === undefined && !this.prefixes.has(s)) break;  // no longer piece starts with s
          if (id !== undefined) { single ||= j === i + 1; relax(i, j, id, this.scores[id]); }
        }
        if (!single) relax(i, i + 1, this.unk, this.unkScore);
      }
      const tokens = [];  // back from the end; a run of unknown characters becomes one token
      let unknown = [];
      for (let j = n; j > 0; j = start[j]) {
        const t = word.slice(start[j], j).join("");
        if (ids[j] === this.unk) { unknown.push(t); continue; }
        if (unknown.length) { tokens.push(unknown.reverse().join("")); unknown = []; }
        tokens.push(t);
      }
      if (unknown.length) tokens.push(unknown.reverse().join(""));
      return tokens.reverse();
    }
    encode(text) {
      if (!text) return [];
      let s = text.replaceAll(" ", METASPACE);
      if (!s.startsWith(METASPACE)) s = METASPACE + s;
      const out = [];
      for (const w of s.split(METASPACE).slice(1)) {
        for (const t of this.segment([...(METASPACE + w)])) {
          const id = this.vocab.get(t);
          if (id !== undefined) { out.push(id); continue; }
          const bytes = [...utf8.encode(t)].map((b) => this.byteIds.get(b));
          if (this.byteIds.size && !bytes.includes(undefined)) out.push(...bytes);
          else out.push(this.unk);
        }
      }
      return out;
    }
    tokenText(id) { return this.pieces[id]; }
  }

  const KINDS = {
    char: CharTokenizer, bpe: BPETokenizer, wordpiece: WordPieceTokenizer, unigram: UnigramTokenizer,
  };
  const tokenizerFromSpec = (spec) => new KINDS[spec.kind](spec);
  const tokenizerCache = new Map();
  function loadTokenizer(url) {
    if (!tokenizerCache.has(url)) {
      tokenizerCache.set(url, fetchJSON(url).then(tokenizerFromSpec));
    }
    return tokenizerCache.get(url);
  }
  const namedTokenizer = (name) => loadTokenizer(new URL(`tokenizers/${name}.json`, WEB));

  // ---- Small DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }
  const labelled = (text, input) => el("label", {}, text + " ", input);

  // ---- The tokenizer playground ------------------------------------------------------------
  function playground(root) {
    const names = (root.dataset.tokenizers || "gpt2").split(/\s+/).filter(Boolean);
    const options = names.map((n) => el("option", { value: n }, n));
    const select = el("select", { class: "llmz-tokenizer" }, ...options);
    const input = el("textarea", { class: "llmz-text", rows: "3", spellcheck: "false" });
    input.value = root.dataset.text || "";
    const stats = el("div", { class: "llmz-stats", "aria-live": "polite" }, "Loading the tokenizer…");
    const tokens = el("div", { class: "llmz-tokens" });
    const row = el("div", { class: "llmz-row" }, labelled("Tokenizer", select));
    root.replaceChildren(row, input, stats, tokens);
    let serial = 0;
    async function update() {
      const mine = ++serial;
      root.dataset.state = "loading";
      try {
        const tok = await namedTokenizer(select.value);
        if (mine !== serial) return;  // a newer update is under way
        const text = input.value, ids = tok.encode(text);
        tokens.replaceChildren(...ids.map((id, i) =>
          el("span", { class: `llmz-tok llmz-c${i % 6}`, title: `id ${id}`, "data-id": String(id) },
             tok.tokenText(id))));
        stats.textContent = `${ids.length} tokens, ${[...text].length} characters`;
        root.dataset.ids = JSON.stringify(ids);
        root.dataset.state = "ready";
      } catch (e) {
        if (mine !== serial) return;
        stats.textContent = `Cannot tokenize: ${e.message}`;
        tokens.replaceChildren();
        root.dataset.state = "error";
      }
    }
    select.addEventListener("change", update);
    input.addEventListener("input", update);
    update();
  }

  // ---- Generation --------------------------------------------------------------------------------
  // mulberry32: the page's seeded generator of uniform numbers in [0, 1).
  function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function argmax(xs) {
    let best = 0;
    for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;  // the first of equals
    return best;
  }

  // The rules of llm_zero's `sampling_probs` (chapter 4a), in float64: temperature 0 is greedy;
  // top-k keeps the k highest logits and every logit tied with the k-th; top-p keeps the tokens
  // whose more likely tokens hold less than topP, so equal tokens stay or go together. Weights
  // come from the gaps to the most likely logit (0 for it), so no temperature gives NaN: one too
  // small for its gaps is greedy, a huge one is uniform over the tokens within reach.
  function weights(logits, temperature, topK = 0, topP = 1) {
    const n = logits.length;
    if (temperature === 0) {
      const w = new Float64Array(n);
      w[argmax(logits)] = 1;
      return w;
    }
    let cut = -Infinity;
    if (topK > 0 && topK < n) cut = Float64Array.from(logits).sort()[n - topK];
    let max = -Infinity;
    for (const x of logits) if (x >= cut && x > max) max = x;
    if (max === -Infinity || logits.some(Number.isNaN)) {
      throw new Error("the logits hold NaN, or every token is at -Infinity: nothing to sample");
    }
    const w = Float64Array.from(logits, (x) => {
      if (x < cut) return 0;
      return x === max ? 1 : Math.exp((x - max) / temperature);
    });
    if (topP < 1) {
      const total = w.reduce((a, b) => a + b, 0);
      const order = [...w.keys()].sort((a, b) => w[b] - w[a]);
      const drop = [];
      let above = 0, groupAbove = 0;
      order.forEach((i, r) => {
        if (r > 0 && w[i] !== w[order[r - 1]]) groupAbove = above;  // a new group of equals
        if (groupAbove >= topP) drop.push(i);
        above += w[i] / total;
      });
      for (const i of drop) w[i] = 0;
    }
    return w;
  }

  // The distribution `sample` draws from (for tests and the curious: it sums to 1).
  function probabilities(logits, temperature, topK = 0, topP = 1) {
    const w = weights(logits, temperature, topK, topP);
    const total = w.reduce((a, b) => a + b, 0);
    return Array.from(w, (x) => x / total);
  }

  function sample(logits, temperature, topK, topP, rand) {
    if (temperature === 0) return argmax(logits);
    const p = weights(logits, temperature, topK, topP);
    let u = rand() * p.reduce((a, b) => a + b, 0);
    for (let i = 0; i < p.length; i++) { u -= p[i]; if (u < 0) return i; }
    return p.findLastIndex((x) => x > 0);  // rounding left u at the very end
  }

  let runtime = null;
  function loadRuntime() {
    runtime ??= new Promise((resolve, reject) => {
      const s = el("script", { src: new URL("ort/ort.wasm.min.js", ROOT).href });
      s.onload = () => {
        const ort = window.ort;
        ort.env.wasm.wasmPaths = new URL("ort/", ROOT).href;
        ort.env.wasm.numThreads = 1;  // no SharedArrayBuffer, so no cross-origin isolation needed
        ort.env.wasm.proxy = false;
        resolve(ort);
      };
      s.onerror = () => reject(new Error("the runtime (ort/ort.wasm.min.js) could not be loaded"));
      document.head.append(s);
    });
    return runtime;
  }

  const models = new Map();
  function loadModel(name) {
    if (!models.has(name)) {
      const base = new URL(`${name}/`, WEB);
      models.set(name, (async () => {
        const [ort, config, tok] = await Promise.all([
          loadRuntime(), fetchJSON(new URL("config.json", base)),
          loadTokenizer(new URL("tokenizer.json", base))]);
        const session = await ort.InferenceSession.create(new URL("model.onnx", base).href,
                                                          { executionProviders: ["wasm"] });
        return { name, ort, config, tok, session };
      })());
    }
    return models.get(name);
  }

  // Let the page paint between tokens without setTimeout's 4 ms clamp.
  const channel = new MessageChannel();
  const waiting = [];
  channel.port1.onmessage = () => waiting.shift()();
  const yieldToPage = () => new Promise((r) => { waiting.push(r); channel.port2.postMessage(0); });

  const feedsOf = (ort, ids) => ({
    input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
  });

  // Each step feeds the last `context_length` ids and yields the next id with the last
  // row of logits. Only the logits are fetched: attention is copied out on request only.
  async function* generate(m, ids, maxTokens, temperature, topK, seed) {
    const { ort, config, session } = m;
    const rand = mulberry32(seed);
    ids = ids.slice();
    for (let step = 0; step < maxTokens; step++) {
      const window_ = ids.slice(-config.context_length);
      const { logits } = await session.run(feedsOf(ort, window_), ["logits"]);
      const last = logits.data.subarray((window_.length - 1) * config.vocab_size);
      const next = sample(last, temperature, topK, 1, rand);
      ids.push(next);
      yield { id: next, logits: last };
      if (next === config.eos_id) return;
    }
  }

  // The graph's outputs for `ids` (at most the context): for the attention view and tests.
  async function runGraph(name, ids) {
    const m = await loadModel(name);
    const fetches = m.session.outputNames;
    const out = await m.session.run(feedsOf(m.ort, ids), fetches);
    const pick = (k) => [k, { data: out[k].data, dims: out[k].dims }];
    return Object.fromEntries(fetches.map(pick));
  }

  // ---- What the model sees: next-token probabilities, one block's attention ------------
  // The k most likely next tokens by softmax at temperature 1: the model's own distribution.
  function topTokens(logits, k) {
    let max = -Infinity;
    for (const x of logits) max = Math.max(max, x);
    const p = Float64Array.from(logits, (x) => Math.exp(x - max));
    const total = p.reduce((a, b) => a + b, 0);
    const order = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, k);
    return order.map((id) => ({ id, p: p[id] / total }));
  }

  function probabilityBars(box, tok, logits) {
    const rows = topTokens(logits, 8).map(({ id, p }) => {
      const percent = `${(100 * p).toFixed(1)}%`;
      return el("div", { class: "llmz-bar-row" },
        el("code", { class: "llmz-bar-label" }, JSON.stringify(tok.tokenText(id))),
        el("span", { class: "llmz-bar", style: `width: ${percent}` }),
        el("span", { class: "llmz-bar-p" }, percent));
    });
    box.replaceChildren(el("div", { class: "llmz-caption" },
      "The last step: the model's top 8 candidates for the token it wrote "
      + "(softmax of its logits)"), ...rows);
  }

  // A heat map of one head (rows: each token; columns: the tokens it attends to), and the
  // tokens tinted by what the selected token attends to (hover a token to select it).
  function attentionView(box, m, ids, att) {
    const heads = Number(att.dims[0]), T = ids.length;  // att: (heads, T, T)
    const options = Array.from({ length: heads },
                               (_, h) => el("option", { value: String(h) }, `head ${h}`));
    const head = el("select", { class: "llmz-head" }, ...options);
    const cell = Math.max(2, Math.floor(320 / T));
    const canvas = el("canvas", { class: "llmz-heatmap", width: String(cell * T),
                                  height: String(cell * T) });
    const text = el("div", { class: "llmz-tokens llmz-att-text" });
    const spans = ids.map((id, i) =>
      el("span", { class: "llmz-tok", "data-i": String(i) }, m.tok.tokenText(id)));
    text.replaceChildren(...spans);
    const weight = (h, q, k) => att.data[(h * T + q) * T + k];
    let query = T - 1;
    const draw = () => {
      const h = Number(head.value), ctx = canvas.getContext("2d");
      for (let q = 0; q < T; q++) {
        for (let k = 0; k < T; k++) {
          const shade = Math.round(255 * (1 - Math.sqrt(weight(h, q, k))));
          ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
          ctx.fillRect(k * cell, q * cell, cell, cell);
        }
      }
      spans.forEach((s, k) => {
        const w = k <= query ? weight(h, query, k) : 0;
        s.style.background = `rgba(60, 90, 255, ${Math.sqrt(w).toFixed(3)})`;
        s.style.outline = k === query ? "2px solid #e8590c" : "";
      });
    };
    text.addEventListener("mouseover", (e) => {
      if (e.target.dataset.i === undefined) return;
      query = Number(e.target.dataset.i);
      draw();
    });
    canvas.addEventListener("mousemove", (e) => {
      const q = Math.floor(e.offsetY / cell);
      if (q >= 0 && q < T) { query = q; draw(); }
    });
    head.addEventListener("change", draw);
    box.replaceChildren(
      el("div", { class: "llmz-caption" }, `Attention of block ${m.config.attention_layer} `,
         head, ` over the last ${T} tokens: each row is a token, each column one it `
         + "attends to (darker: more). Hover a token to see where it looks."),
      canvas, text);
    draw();
  }

  async function showAttention(box, m, ids) {
    const window_ = ids.slice(-Math.min(m.config.context_length, 64));
    const out = await runGraph(m.name, window_);
    attentionView(box, m, window_, out.attention);
  }

  // ---- The widgets' common loop ---------------------------------------------------------
  // Load the model when the widget comes into view, not with every visit to the page.
  function whenSeen(root, say, onReady) {
    if (typeof WebAssembly !== "object") {
      say("unsupported", "This widget runs the model with WebAssembly, which this browser "
                         + "does not offer. The chapter reads the same without it.");
      return;
    }
    say("loading", "Loading the model and the WebAssembly runtime (once)…");
    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      loadModel(root.dataset.model).then(onReady,
        (e) => say("error", `The model could not be loaded: ${e.message}`));
    });
    seen.observe(root);
  }

  const describe = (m) => {
    const { n_layers: layers, arch = "gpt2" } = m.config.model;
    return `a ${layers}-layer ${arch} model, ${m.config.vocab_size} tokens, `
      + `context ${m.config.context_length}`;
  };

  // Generate from `ids`, calling `onToken(id, logits)` for each new id; stops early when
  // `keepGoing()` turns false. The ids and the speed measured go into the widget's data.
  async function runAndMeasure(root, model, ids, settings, onToken, keepGoing, say) {
    const { t, k, s, n } = settings, out = [];
    const start = performance.now();
    let shown = start;
    for await (const { id, logits } of generate(model, ids, n, t, k, s)) {
      out.push(id);
      if (onToken(id, logits) === false || !keepGoing()) break;
      const now = performance.now();
      if (now - shown > 200) {  // a few updates a second: the page's work stays small
        const rate = out.length / ((now - start) / 1000);
        say("running", `Generating… ${out.length} tokens, ${rate.toFixed(1)} tokens/s`);
        shown = now;
      }
      await yieldToPage();
    }
    const seconds = (performance.now() - start) / 1000;
    root.dataset.ids = JSON.stringify(out);
    root.dataset.tokensPerSecond = (out.length / seconds).toFixed(1);
    return { out, seconds };
  }

  function generator(root) {
    const num = (value, attrs) =>
      el("input", { type: "number", value: String(value), ...attrs });
    const prompt = el("textarea", { class: "llmz-prompt", rows: "2", spellcheck: "false" });
    prompt.value = root.dataset.prompt || "";
    const temperature = num(0.8,
                            { class: "llmz-temperature", min: "0", max: "2", step: "0.1" });
    const topK = num(40, { class: "llmz-top-k", min: "0", step: "1" });
    const seed = num(0, { class: "llmz-seed", min: "0", step: "1" });
    const maxTokens = num(root.dataset.tokens || 200,
                          { class: "llmz-max-tokens", min: "1", max: "1000", step: "1" });
    const button = el("button", { class: "llmz-run", type: "button", disabled: "" },
                      "Generate");
    const status = el("div", { class: "llmz-status", "aria-live": "polite" });
    const output = el("pre", { class: "llmz-output" });
    const bars = el("div", { class: "llmz-probs" });
    const attention = el("div", { class: "llmz-att" });
    root.replaceChildren(prompt,
      el("div", { class: "llmz-row" }, labelled("temperature", temperature),
         labelled("top-k (0: all)", topK), labelled("seed", seed),
         labelled("tokens", maxTokens), button),
      status, output, el("div", { class: "llmz-insight" }, bars, attention));
    const say = (state, text) => {
      root.dataset.state = state;
      status.textContent = text;
    };
    let model = null, running = false;
    whenSeen(root, say, (m) => {
      model = m;
      button.disabled = false;
      say("ready", `Ready: ${describe(m)}.`);
    });

    button.addEventListener("click", async () => {
      if (running) { running = false; return; }  // the button is "Stop" while running
      let ids;
      try {
        ids = model.tok.encode(prompt.value);
      } catch (e) {
        say("error", `Cannot encode the prompt: ${e.message}`);
        return;
      }
      if (!ids.length) { say("error", "Type a prompt first."); return; }
      const t = Number(temperature.value), k = Math.floor(Number(topK.value));
      const s = Math.floor(Number(seed.value)), n = Math.floor(Number(maxTokens.value));
      if (!(t >= 0) || !(k >= 0) || !(s >= 0) || !(n >= 1)) {
        say("error",
            "Temperature, top-k and seed must be 0 or more, and tokens at least 1.");
        return;
      }
      running = true;
      button.textContent = "Stop";
      say("running", "Generating…");
      output.replaceChildren(el("span", { class: "llmz-prompt-text" }, prompt.value));
      const decode = model.tok.decoder();
      let last = null, shown = 0;
      try {
        const onToken = (id, logits) => {
          output.append(decode(id));
          last = logits;
          if (performance.now() - shown > 200) {
            probabilityBars(bars, model.tok, logits);
            shown = performance.now();
          }
        };
        const { out, seconds } = await runAndMeasure(
          root, model, ids, { t, k, s, n }, onToken, () => running, say);
        if (last) probabilityBars(bars, model.tok, last);
        if (model.config.attention_layer != null) {
          await showAttention(attention, model, ids.concat(out));
        }
        const rate = (out.length / seconds).toFixed(1);
        say("done", `${out.length} tokens in ${seconds.toFixed(2)} s: ${rate} tokens/s `
                    + "in your browser.");
      } catch (e) {
        say("error", `Generation failed: ${e.message}`);
      } finally {
        running = false;
        button.textContent = "Generate";
      }
    });
  }

  // Chat with a model fine-tuned on chapter 7's instructions: each question is one
  // instruction in that prompt format (the model learnt no longer conversations).
  function chat(root) {
    const question = el("textarea",
                        { class: "llmz-question", rows: "2", spellcheck: "false" });
    question.value = root.dataset.prompt || "";
    const button = el("button", { class: "llmz-ask", type: "button", disabled: "" }, "Ask");
    const status = el("div", { class: "llmz-status", "aria-live": "polite" });
    const log = el("div", { class: "llmz-chat-log" });
    root.replaceChildren(log, question, el("div", { class: "llmz-row" }, button), status);
    const say = (state, text) => {
      root.dataset.state = state;
      status.textContent = text;
    };
    let model = null, running = false;
    whenSeen(root, say, (m) => {
      model = m;
      button.disabled = false;
      say("ready", `Ready: ${describe(m)}, fine-tuned on instructions (greedy answers).`);
    });
    button.addEventListener("click", async () => {
      if (running) return;
      const asked = question.value.trim();
      if (!asked) { say("error", "Type a question or an instruction first."); return; }
      const [before, after] = model.config.instruction_prompt;
      const ids = model.tok.encode(before + asked + after);
      running = true;
      button.disabled = true;
      const answer = el("div", { class: "llmz-answer" });
      log.append(el("div", { class: "llmz-asked" }, asked), answer);
      const decode = model.tok.decoder();
      let text = "";
      try {
        // Greedy, to the end-of-text id or to a "###" heading the model starts itself.
        const onToken = (id) => {
          if (id === model.config.eos_id) return false;
          text += decode(id);
          const cut = text.indexOf("\n\n###");
          answer.textContent = cut < 0 ? text : text.slice(0, cut);
          return cut < 0;
        };
        const settings = { t: 0, k: 0, s: 0, n: Number(root.dataset.tokens || 80) };
        const { out, seconds } = await runAndMeasure(
          root, model, ids, settings, onToken, () => true, say);
        root.dataset.answer = answer.textContent;
        const rate = (out.length / seconds).toFixed(1);
        say("done", `${out.length} tokens in ${seconds.toFixed(2)} s: ${rate} tokens/s `
                    + "in your browser.");
      } catch (e) {
        say("error", `The answer failed: ${e.message}`);
      } finally {
        running = false;
        button.disabled = false;
      }
    });
  }

  // For the site test and for curious readers at the console.
  window.llmZero = {
    namedTokenizer, tokenizerFromSpec, loadModel, runGraph, mulberry32, probabilities,
    sample, topTokens,
  };

  const start = () => {
    document.querySelectorAll(".llmz-playground").forEach(playground);
    document.querySelectorAll(".llmz-generate").forEach(generator);
    document.querySelectorAll(".llmz-chat").forEach(chat);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
