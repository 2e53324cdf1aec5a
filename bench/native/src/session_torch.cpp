// LibTorch: a TorchScript module (traced from the same weights as the torch backend's model)
// run under InferenceMode with the cell's intra-op threads and one inter-op thread, as
// bench/backends/pytorch.py runs the Python model. The input tensor wraps the caller's buffer.
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include <sstream>

#include "session.hpp"

namespace db {
namespace {

class TorchSession : public Session {
 public:
  TorchSession(const std::string& path, int threads, const Config& config) {
    if (!config.empty()) {
      throw std::invalid_argument("LibTorch takes no config, got " + config.begin()->first);
    }
    at::set_num_threads(threads);
    try {  // only settable before the first parallel work in the process
      at::set_num_interop_threads(1);
    } catch (const c10::Error&) {
    }
    module_ = torch::jit::load(path, torch::kCPU);
    module_.eval();
  }

  std::vector<Output> run(const float* input, const std::vector<int64_t>& shape) override {
    c10::InferenceMode guard;
    at::Tensor x = torch::from_blob(const_cast<float*>(input), shape, torch::kFloat32);
    c10::IValue result = module_.forward({x});
    last_.clear();
    if (result.isTuple()) {
      for (const auto& item : result.toTupleRef().elements()) last_.push_back(item.toTensor());
    } else {
      last_.push_back(result.toTensor());
    }
    std::vector<Output> outputs;
    for (auto& t : last_) {
      if (t.scalar_type() != torch::kFloat32) throw std::runtime_error("an output is not float32");
      t = t.contiguous();
      outputs.push_back({t.data_ptr<float>(), t.sizes().vec()});
    }
    return outputs;
  }

  std::string runtime_info_json() const override {
    std::string precision = "fp32";
    for (const auto& p : module_.parameters()) {
      if (p.scalar_type() != torch::kFloat32) precision = c10::toString(p.scalar_type());
    }
    std::ostringstream json;
    json << "{\"precision_run\": " << json_string(precision)
         << ", \"threads\": " << at::get_num_threads()
         << ", \"interop_threads\": " << at::get_num_interop_threads()
         << ", \"parallel_info\": " << json_string(at::get_parallel_info())
         << ", \"read_back\": [\"precision_run\", \"threads\"]}";
    return json.str();
  }

 private:
  torch::jit::Module module_;
  std::vector<at::Tensor> last_;
};

}  // namespace

std::unique_ptr<Session> load_session(const std::string& model_path, int threads,
                                      const Config& config) {
  return std::make_unique<TorchSession>(model_path, threads, config);
}

const char* framework_version() { return TORCH_VERSION; }

}  // namespace db
