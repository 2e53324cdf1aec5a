// What one framework implements for deploybench's native API (deploybench.h): load a model,
// run it on a host float32 input, say what it runs. c_api.cpp turns this into the C ABI.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace db {

// One output of the last run: float32, C order, owned by the session until its next run.
struct Output {
  const float* data;
  std::vector<int64_t> shape;
};

class Session {
 public:
  virtual ~Session() = default;
  // Runs the model on `input` (not copied: the framework reads the caller's buffer).
  virtual std::vector<Output> run(const float* input, const std::vector<int64_t>& shape) = 0;
  // A JSON object with at least precision_run and threads, read back from the framework.
  virtual std::string runtime_info_json() const = 0;
};

using Config = std::map<std::string, std::string>;

// Implemented once per framework (session_<framework>.cpp). Throws on failure.
std::unique_ptr<Session> load_session(const std::string& model_path, int threads,
                                      const Config& config);
const char* framework_version();

// JSON string escaping, for the runtime info both frameworks write.
std::string json_string(const std::string& text);

}  // namespace db
