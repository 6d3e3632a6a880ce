// Classify texts with a pocketsize ONNX directory the way a Node user would: the transformers.js
// pipeline (its tokenizer, onnxruntime-node) reading the directory's onnx/ layout.
//   node classify.mjs MODEL_DIR DTYPE TEXTS.json   -> JSON: per text, every label with its score
import fs from "node:fs";
import path from "node:path";

import { env, pipeline } from "@huggingface/transformers";

const [modelDir, dtype, textsFile] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(modelDir)) + path.sep;
const classify = await pipeline("text-classification", path.basename(modelDir), {
  dtype,
  device: "cpu",
});
const texts = JSON.parse(fs.readFileSync(textsFile, "utf8"));
const results = [];
for (const text of texts) {
  results.push(await classify(text, { top_k: null }));
}
process.stdout.write(JSON.stringify(results));
