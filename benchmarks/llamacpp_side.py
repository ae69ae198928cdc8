"""The llama.cpp side of the GGUF parity check (chapter 10a): run by a Python that has
`llama-cpp-python` (built from source; see benchmarks/RESULTS.md), not by llm_zero's venv.

Reads one JSON object on stdin: {"model": path to a .gguf, "n_ctx": int, "prompt": [ids],
"n_new": int, "texts": [str]}. Prints one JSON object: the greedy continuation of the
prompt (up to the end-of-text id, which it leaves out, as `llm-zero generate` does), the
logits at every prompt position, llama.cpp's ids for each text (no BOS, special tokens
parsed) and the seconds the load took."""
import json
import sys
import time

from llama_cpp import Llama


def main():
    job = json.load(sys.stdin)
    t0 = time.perf_counter()
    # The key/value cache in float32 (type 0), as ours: llama.cpp's default, float16, alone moves
    # the logits by up to 2.5e-3 and flips the tiny Llama's greedy choice at its 43rd token.
    llm = Llama(model_path=job["model"], n_ctx=job["n_ctx"], n_batch=job["n_ctx"],
                n_threads=1, logits_all=True, verbose=False, seed=0, type_k=0, type_v=0)
    load_s = time.perf_counter() - t0
    eos = llm.token_eos()
    ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in job["texts"]]
    llm.reset()
    llm.eval(job["prompt"])
    logits = llm.scores[: len(job["prompt"])].tolist()
    greedy = []
    for tok in llm.generate(job["prompt"], top_k=1, temp=0.0, repeat_penalty=1.0):
        if tok == eos or len(greedy) == job["n_new"]:
            break
        greedy.append(int(tok))
    json.dump({"greedy": greedy, "logits": logits, "ids": ids, "load_s": load_s}, sys.stdout)


if __name__ == "__main__":
    main()
