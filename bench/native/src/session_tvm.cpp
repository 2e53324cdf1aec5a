// Apache TVM through its C++ runtime (tvm-ffi): the Relax library the Python backend compiled
// and exported (bench/backends/tvm_loader.py: same target, same tuning database), loaded
// here with its weights, on the Relax VM with the pooled allocator, on a thread pool of the
// cell's size. As in the Python backend, the input is copied into a TVM tensor (64-byte
// aligned, as TVM's kernels assume), the weights are prepacked once at load when the library
// was tuned with prepacking (config prepack=1), and outputs stay TVM's until the next run.
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdlib>
#include <optional>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "session.hpp"

namespace db {
namespace {

namespace ffi = tvm::ffi;

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR
constexpr size_t kAlignment = 64;    // TVM's allocation alignment (kAllocAlignment)

struct AlignedAlloc {
  void AllocData(DLTensor* tensor) {
    size_t bytes = (ffi::GetDataSize(*tensor) + kAlignment - 1) / kAlignment * kAlignment;
    tensor->data = std::aligned_alloc(kAlignment, bytes == 0 ? kAlignment : bytes);
    if (tensor->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

ffi::Function global(const char* name) {
  auto found = ffi::Function::GetGlobal(name);
  if (!found) throw std::runtime_error(std::string("TVM's runtime has no function ") + name);
  return *found;
}

ffi::Function member(const ffi::Module& module, const char* name) {
  auto found = module->GetFunction(name);
  if (!found) throw std::runtime_error(std::string("the TVM module has no function ") + name);
  return *found;
}

class TvmSession : public Session {
 public:
  TvmSession(const std::string& path, int threads, const Config& config) {
    auto params = config.find("params");
    if (params == config.end()) throw std::invalid_argument("config needs params=PATH");
    bool prepack = false;
    for (const auto& [key, value] : config) {
      if (key == "prepack") {
        prepack = value == "1";
      } else if (key != "params") {
        throw std::invalid_argument("unknown tvm config key " + key);
      }
    }
    // The pool is sized once, on first use, from TVM_NUM_THREADS; config_threadpool then sets
    // how many of its workers run (mode 1, TVM's default), as the Python backend does.
    setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);
    global("runtime.config_threadpool")(1, threads);
    threads_ = global("runtime.NumThreads")().cast<int>();
    if (threads_ != threads) {
      throw std::runtime_error("TVM's thread pool was created earlier with " +
                               std::to_string(threads_) + " threads and cannot grow");
    }
    library_ = ffi::Module::LoadFromFile(path);
    vm_ = member(*library_, "vm_load_executable")().cast<ffi::Module>();
    // One device, the CPU, which also runs the shape functions (the host comes last).
    member(*vm_, "vm_initialization")(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    main_ = member(*vm_, "main");
    auto loaded = global("runtime.LoadParamsFromFile")(params->second)
                      .cast<ffi::Map<ffi::String, ffi::Tensor>>();
    // Saved as p00000, p00001, ...: the map's order is not theirs, the names are.
    std::vector<ffi::Tensor> ordered(loaded.size());
    for (const auto& [name, tensor] : loaded) {
      ordered.at(static_cast<size_t>(std::stoi(std::string(name).substr(1)))) = tensor;
    }
    ffi::Array<ffi::Tensor> weights(ordered.begin(), ordered.end());
    if (prepack) {  // the tuned kernels' weight layouts: transformed once, here
      weights = member(*vm_, "main_transform_params")(weights).cast<ffi::Array<ffi::Tensor>>();
    }
    for (const auto& w : weights) weights_.push_back(w);
    prepack_ = prepack;
  }

  std::vector<Output> run(const float* input, const std::vector<int64_t>& shape) override {
    if (!input_ || std::vector<int64_t>(input_->shape().begin(), input_->shape().end()) != shape) {
      input_ = ffi::Tensor::FromNDAlloc(AlignedAlloc(), ffi::ShapeView(shape.data(), shape.size()),
                                        DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
    }
    std::memcpy(input_->data_ptr(), input, ffi::GetDataSize(*input_));
    std::vector<ffi::AnyView> args;
    args.reserve(weights_.size() + 1);
    args.emplace_back(*input_);
    for (const auto& w : weights_) args.emplace_back(w);
    main_->CallPacked(args.data(), static_cast<int32_t>(args.size()), &result_);
    std::vector<Output> outputs;
    if (auto one = result_.try_cast<ffi::Tensor>()) {
      outputs.push_back(output(*one, 0));
    } else if (auto many = result_.try_cast<ffi::Array<ffi::Any>>()) {
      for (size_t i = 0; i < many->size(); ++i) {
        outputs.push_back(output((*many)[i].cast<ffi::Tensor>(), i));
      }
    } else {
      throw std::runtime_error("main returned neither a tensor nor a tuple of tensors");
    }
    return outputs;
  }

  std::string runtime_info_json() const override {
    std::ostringstream json;
    json << "{\"precision_run\": \"fp32\", \"threads\": " << threads_
         << ", \"weight_prepack\": " << (prepack_ ? "true" : "false")
         << ", \"allocator\": \"pooled\""
         << ", \"input\": \"copied into a 64-byte aligned TVM tensor, as the Python backend does\""
         << ", \"read_back\": [\"threads\"]}";
    return json.str();
  }

 private:
  Output output(const ffi::Tensor& tensor, size_t i) {
    const DLTensor* t = tensor.GetDLTensorPtr();
    if (t->dtype.code != kDLFloat || t->dtype.bits != 32 || t->device.device_type != kDLCPU ||
        !ffi::IsContiguous(*t)) {
      throw std::runtime_error("output " + std::to_string(i) +
                               " is not a contiguous float32 CPU tensor");
    }
    const auto* data =
        reinterpret_cast<const float*>(static_cast<const char*>(t->data) + t->byte_offset);
    return {data, std::vector<int64_t>(t->shape, t->shape + t->ndim)};
  }

  int threads_ = 0;
  bool prepack_ = false;
  // Not default-constructible: set in the constructor.
  std::optional<ffi::Module> library_;
  std::optional<ffi::Module> vm_;
  std::optional<ffi::Function> main_;
  std::vector<ffi::Tensor> weights_;
  std::optional<ffi::Tensor> input_;
  ffi::Any result_;  // holds the last outputs alive until the next run
};

}  // namespace

std::unique_ptr<Session> load_session(const std::string& model_path, int threads,
                                      const Config& config) {
  return std::make_unique<TvmSession>(model_path, threads, config);
}

const char* framework_version() {
  // The wheel's version, compiled in by CMake (TVM's C++ runtime has no version call).
  return DB_TVM_VERSION;
}

}  // namespace db
