// The C++ runner: one cell's work with no Python in the process, on the shared library's
// inference code (deploybench.h). It mirrors bench/run.py and bench/measure/timing.py:
//   1. load (timed)                      4. warm-up, then measurement: both stop when a
//   2. one cold inference (timed)           minimum count AND a minimum duration are reached,
//   3. every input in batches, outputs      measurement also at a maximum count or duration;
//      written for parity (untimed)         every iteration's latency kept
// Statistics, parity and the result file are computed in Python from what this writes, by
// the same code as every other cell.
//
// Usage: deploybench-<framework> --model PATH --inputs FILE --shape N,C,H,W --batch B
//          --threads T --outputs ELEMS[,ELEMS...] --out DIR [--config K=V;...]
//          [--warmup-min-iters n] [--warmup-min-s s] [--min-iters n] [--min-s s]
//          [--max-iters n] [--max-s s]
// Inputs: raw float32 in C order. Writes DIR/output_<i>.bin (raw float32, N samples) and
// DIR/run.json, each through a temporary file and a rename.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../deploybench.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<int64_t> parse_ints(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(std::stoll(item));
  return values;
}

struct Bounds {
  long warmup_min_iters = 10, min_iters = 30, max_iters = 10000;
  double warmup_min_s = 1.0, min_s = 3.0, max_s = 60.0;
};

struct Args {
  std::string model, inputs, out, config;
  std::vector<int64_t> shape, output_elems;
  long batch = 1, threads = 1;
  Bounds bounds;
};

Args parse_args(int argc, char** argv) {
  std::map<std::string, std::string> named;
  for (int i = 1; i + 1 < argc; i += 2) named[argv[i]] = argv[i + 1];
  if (argc % 2 == 0) throw std::invalid_argument("arguments come in --name value pairs");
  auto need = [&](const std::string& key) {
    auto it = named.find(key);
    if (it == named.end()) throw std::invalid_argument("missing " + key);
    return it->second;
  };
  auto get = [&](const std::string& key, const std::string& fallback) {
    auto it = named.find(key);
    return it == named.end() ? fallback : it->second;
  };
  Args a;
  a.model = need("--model");
  a.inputs = need("--inputs");
  a.out = need("--out");
  a.config = get("--config", "");
  a.shape = parse_ints(need("--shape"));
  a.output_elems = parse_ints(need("--outputs"));
  a.batch = std::stol(need("--batch"));
  a.threads = std::stol(need("--threads"));
  Bounds& b = a.bounds;
  b.warmup_min_iters = std::stol(get("--warmup-min-iters", std::to_string(b.warmup_min_iters)));
  b.warmup_min_s = std::stod(get("--warmup-min-s", std::to_string(b.warmup_min_s)));
  b.min_iters = std::stol(get("--min-iters", std::to_string(b.min_iters)));
  b.min_s = std::stod(get("--min-s", std::to_string(b.min_s)));
  b.max_iters = std::stol(get("--max-iters", std::to_string(b.max_iters)));
  b.max_s = std::stod(get("--max-s", std::to_string(b.max_s)));
  if (a.shape.size() < 2 || a.batch < 1) throw std::invalid_argument("bad --shape or --batch");
  return a;
}

// One batch's worth of buffers: the input, and one output buffer per model output.
struct Batch {
  std::vector<float> input;
  std::vector<int64_t> shape;
  std::vector<std::vector<float>> outputs;
  std::vector<float*> output_ptrs;
  std::vector<int64_t> capacity;
  std::vector<int64_t> out_shapes;
  std::vector<int> out_ranks;
};

class Runner {
 public:
  Runner(const Args& args, db_session* session) : args_(args), session_(session) {
    sample_elems_ = 1;
    for (size_t d = 1; d < args.shape.size(); ++d) sample_elems_ *= args.shape[d];
  }

  // The batch of `args.batch` inputs starting at `start`, wrapping around (bench.run.batch_indices).
  Batch batch_at(const std::vector<float>& all, long start) const {
    Batch b;
    long n = static_cast<long>(args_.shape[0]);
    b.shape = args_.shape;
    b.shape[0] = args_.batch;
    b.input.resize(static_cast<size_t>(args_.batch * sample_elems_));
    for (long i = 0; i < args_.batch; ++i) {
      const float* src = all.data() + ((start + i) % n) * sample_elems_;
      std::copy(src, src + sample_elems_, b.input.begin() + i * sample_elems_);
    }
    for (int64_t elems : args_.output_elems) {
      b.outputs.emplace_back(static_cast<size_t>(elems * args_.batch));
      b.capacity.push_back(elems * args_.batch);
    }
    for (auto& o : b.outputs) b.output_ptrs.push_back(o.data());
    b.out_shapes.resize(b.outputs.size() * DB_MAX_RANK);
    b.out_ranks.resize(b.outputs.size());
    return b;
  }

  void infer(Batch& b) const {
    char err[2048] = {0};
    int rc = db_infer(session_, b.input.data(), b.shape.data(), static_cast<int>(b.shape.size()),
                      static_cast<int>(b.outputs.size()), b.output_ptrs.data(),
                      b.capacity.data(), b.out_shapes.data(), b.out_ranks.data(), err, sizeof err);
    if (rc != 0) throw std::runtime_error(std::string("inference failed: ") + err);
  }

  // bench.measure.timing._run_until: until both minimums are met or a maximum is reached.
  std::vector<double> run_until(Batch& b, long min_iters, double min_s, double* elapsed_s) const {
    std::vector<double> samples;
    auto start = Clock::now();
    while (true) {
      long n = static_cast<long>(samples.size());
      *elapsed_s = ms_since(start) / 1e3;
      if (n >= args_.bounds.max_iters || (n >= 1 && *elapsed_s >= args_.bounds.max_s)) break;
      if (n >= min_iters && *elapsed_s >= min_s) break;
      auto t0 = Clock::now();
      infer(b);
      samples.push_back(ms_since(t0));
    }
    return samples;
  }

 private:
  const Args& args_;
  db_session* session_;
  int64_t sample_elems_;
};

std::vector<float> read_floats(const std::string& path, size_t count) {
  std::ifstream file(path, std::ios::binary);
  std::vector<float> data(count);
  file.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!file || file.peek() != EOF) throw std::runtime_error(path + " does not hold the --shape's floats");
  return data;
}

void write_atomic(const std::string& path, const char* data, size_t size) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    file.write(data, static_cast<std::streamsize>(size));
    file.flush();
    if (!file) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
}

std::string json_list(const std::vector<double>& values) {
  std::ostringstream out;
  out.precision(17);
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  return out.str() + "]";
}

int run(const Args& args) {
  size_t total = 1;
  for (auto d : args.shape) total *= static_cast<size_t>(d);
  std::vector<float> inputs = read_floats(args.inputs, total);

  char err[4096] = {0};
  auto t_load = Clock::now();
  db_session* session = db_load(args.model.c_str(), static_cast<int>(args.threads),
                                args.config.c_str(), err, sizeof err);
  double load_ms = ms_since(t_load);
  if (session == nullptr) {
    std::cerr << "load failed: " << err << "\n";
    return 3;  // the framework refused the model: an unsupported cell, not a crash
  }
  Runner runner(args, session);
  Batch first = runner.batch_at(inputs, 0);
  auto t_cold = Clock::now();
  runner.infer(first);
  double cold_ms = ms_since(t_cold);

  // Every input once, in batches of the cell's size, for parity (bench.run.run_all_inputs).
  long n = static_cast<long>(args.shape[0]);
  std::vector<std::vector<float>> all_outputs(args.output_elems.size());
  for (long start = 0; start < n; start += args.batch) {
    long take = std::min(args.batch, n - start);
    Batch b = runner.batch_at(inputs, start);
    runner.infer(b);
    for (size_t o = 0; o < all_outputs.size(); ++o) {
      auto begin = b.outputs[o].begin();
      all_outputs[o].insert(all_outputs[o].end(), begin, begin + take * args.output_elems[o]);
    }
  }
  for (size_t o = 0; o < all_outputs.size(); ++o) {
    write_atomic(args.out + "/output_" + std::to_string(o) + ".bin",
                 reinterpret_cast<const char*>(all_outputs[o].data()),
                 all_outputs[o].size() * sizeof(float));
  }

  double warmup_s = 0, measure_s = 0;
  const Bounds& b = args.bounds;
  auto warm = runner.run_until(first, b.warmup_min_iters, b.warmup_min_s, &warmup_s);
  auto samples = runner.run_until(first, b.min_iters, b.min_s, &measure_s);

  std::vector<char> info(1 << 16);
  if (db_runtime_info(session, info.data(), info.size()) != 0) {
    throw std::runtime_error(std::string("runtime info: ") + info.data());
  }
  std::ostringstream json;
  json.precision(17);
  json << "{\"load_ms\": " << load_ms << ", \"cold_ms\": " << cold_ms
       << ", \"warmup_iters\": " << warm.size() << ", \"warmup_s\": " << warmup_s
       << ", \"measure_s\": " << measure_s << ", \"samples_ms\": " << json_list(samples)
       << ", \"framework_version\": \"" << db_framework_version() << "\""
       << ", \"compiler\": \"" << __VERSION__ << "\""
       << ", \"runtime\": " << info.data() << "}\n";
  std::string text = json.str();
  write_atomic(args.out + "/run.json", text.data(), text.size());
  db_free(session);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& exc) {
    std::cerr << "deploybench native runner: " << exc.what() << "\n";
    return 1;
  }
}
