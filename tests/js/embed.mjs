// Embed texts with a pocketsize ONNX directory the way a Node user would: transformers.js's
// feature-extraction pipeline (its tokenizer, onnxruntime-node) with mean pooling and
// normalization, reading the directory's onnx/ layout.
//   node embed.mjs MODEL_DIR DTYPE TEXTS.json   -> JSON: per text, its embedding
import fs from "node:fs";
import path from "node:path";

import { env, pipeline } from "@huggingface/transformers";

const [modelDir, dtype, textsFile] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(modelDir)) + path.sep;
const embed = await pipeline("feature-extraction", path.basename(modelDir), {
  dtype,
  device: "cpu",
});
const texts = JSON.parse(fs.readFileSync(textsFile, "utf8"));
const output = await embed(texts, { pooling: "mean", normalize: true });
process.stdout.write(JSON.stringify(output.tolist()));
