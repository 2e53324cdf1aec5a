// ONNX Runtime through its C++ API, configured by the same settings as the Python backend
// (bench/backends/ort_loader.py writes them as the config): the CPU execution provider, the
// graph optimisation level, sequential execution, intra- and inter-op threads, the free
// dimension overrides that fix the batch. The input tensor wraps the caller's buffer.
//
// The headers are Debian's libonnxruntime-dev (API 21); the library is the Python wheel's
// (serving API 1 to its own version), opened here by path (config key `library`): the wheel
// ships no file under the library's soname, so nothing is linked at build time and the
// session runs exactly the library the Python backend runs.
#define ORT_API_MANUAL_INIT
#include <dlfcn.h>
#include <unistd.h>
#include <onnxruntime_cxx_api.h>

#include <optional>
#include <sstream>
#include <stdexcept>

#include "session.hpp"

namespace db {
namespace {

const char* kFreeDimPrefix = "free_dimension.";
const char* kSessionPrefix = "session.";  // ORT's own session config entries, passed as they are

const OrtApiBase* open_library(const std::string& path) {
  static std::string opened;
  static const OrtApiBase* base = nullptr;
  if (access(path.c_str(), R_OK) != 0) throw std::runtime_error("cannot open " + path);
  if (base != nullptr) {
    if (path != opened) throw std::runtime_error("ONNX Runtime is already loaded from " + opened);
    return base;
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) throw std::runtime_error(std::string("cannot open ") + dlerror());
  using GetApiBase = const OrtApiBase* (*)();
  auto get = reinterpret_cast<GetApiBase>(dlsym(handle, "OrtGetApiBase"));
  if (get == nullptr) throw std::runtime_error(path + " has no OrtGetApiBase");
  const OrtApi* api = get()->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    throw std::runtime_error(std::string("ONNX Runtime ") + get()->GetVersionString() +
                             " does not serve API version " + std::to_string(ORT_API_VERSION));
  }
  Ort::InitApi(api);
  opened = path;
  base = get();
  return base;
}

GraphOptimizationLevel optimization_level(const std::string& name) {
  if (name == "all") return ORT_ENABLE_ALL;
  if (name == "extended") return ORT_ENABLE_EXTENDED;
  if (name == "basic") return ORT_ENABLE_BASIC;
  if (name == "disabled") return ORT_DISABLE_ALL;
  throw std::invalid_argument("graph_optimization_level must be all|extended|basic|disabled");
}

const char* element_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "fp32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "fp16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return "bf16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    default: return "other";
  }
}

int to_int(const std::string& key, const std::string& value) {
  try {
    return std::stoi(value);
  } catch (const std::exception&) {
    throw std::invalid_argument(key + " must be an integer, not '" + value + "'");
  }
}

class OnnxRuntimeSession : public Session {
 public:
  OnnxRuntimeSession(const std::string& path, int threads, const Config& config)
      : threads_(threads) {
    auto library = config.find("library");
    if (library == config.end()) throw std::invalid_argument("config needs library=PATH");
    version_ = open_library(library->second)->GetVersionString();
    library_ = library->second;
    env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "deploybench");
    memory_.emplace(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault));
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(threads);
    inter_ = 1;
    level_ = "all";
    for (const auto& [key, value] : config) {
      if (key == "library") continue;
      if (key == "inter_op_num_threads") {
        inter_ = to_int(key, value);
      } else if (key == "graph_optimization_level") {
        level_ = value;
      } else if (key == "execution_mode") {
        if (value != "sequential") throw std::invalid_argument("execution_mode: sequential only");
      } else if (key.rfind(kFreeDimPrefix, 0) == 0) {
        const std::string dim = key.substr(std::string(kFreeDimPrefix).size());
        Ort::ThrowOnError(Ort::GetApi().AddFreeDimensionOverrideByName(options, dim.c_str(),
                                                                     to_int(key, value)));
        free_dims_ += (free_dims_.empty() ? "" : ", ") + json_string(dim) + ": " + value;
      } else if (key.rfind(kSessionPrefix, 0) == 0) {
        options.AddConfigEntry(key.c_str(), value.c_str());
      } else {
        throw std::invalid_argument("unknown onnxruntime config key " + key);
      }
    }
    options.SetInterOpNumThreads(inter_);
    options.SetExecutionMode(ORT_SEQUENTIAL);
    options.SetGraphOptimizationLevel(optimization_level(level_));
    session_ = std::make_unique<Ort::Session>(*env_, path.c_str(), options);
    if (session_->GetInputCount() != 1) throw std::invalid_argument("the model must have one input");
    Ort::AllocatorWithDefaultOptions allocator;
    input_name_ = session_->GetInputNameAllocated(0, allocator).get();
    for (size_t i = 0; i < session_->GetOutputCount(); ++i) {
      output_names_.push_back(session_->GetOutputNameAllocated(i, allocator).get());
    }
    for (const auto& name : output_names_) output_ptrs_.push_back(name.c_str());
    input_type_ = session_->GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType();
  }

  std::vector<Output> run(const float* input, const std::vector<int64_t>& shape) override {
    int64_t elems = 1;
    for (auto d : shape) elems *= d;
    // Wraps the caller's memory: ONNX Runtime reads the input where it lies.
    Ort::Value tensor = Ort::Value::CreateTensor<float>(
        *memory_, const_cast<float*>(input), static_cast<size_t>(elems), shape.data(), shape.size());
    const char* in_name = input_name_.c_str();
    results_ = session_->Run(Ort::RunOptions{nullptr}, &in_name, &tensor, 1, output_ptrs_.data(),
                             output_ptrs_.size());
    std::vector<Output> outputs;
    for (size_t i = 0; i < results_.size(); ++i) {
      auto info = results_[i].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        throw std::runtime_error("output " + std::to_string(i) + " is not float32");
      }
      outputs.push_back({results_[i].GetTensorData<float>(), info.GetShape()});
    }
    return outputs;
  }

  std::string runtime_info_json() const override {
    // ONNX Runtime's API reads back the graph's types, not its session options: the thread
    // counts and levels below are the ones this session set (the OS counts the busy threads).
    std::ostringstream json;
    json << "{\"precision_run\": " << json_string(element_name(input_type_))
         << ", \"threads\": " << threads_ << ", \"inter_op_threads\": " << inter_
         << ", \"graph_optimization_level\": " << json_string(level_)
         << ", \"execution_mode\": \"sequential\""
         << ", \"free_dimension_overrides\": {" << free_dims_ << "}"
         << ", \"providers\": [\"CPUExecutionProvider\"]"
         << ", \"library\": " << json_string(library_)
         << ", \"headers_api_version\": " << ORT_API_VERSION
         << ", \"read_back\": [\"precision_run\"], \"set\": [\"threads\", \"inter_op_threads\", "
            "\"graph_optimization_level\", \"free_dimension_overrides\"]}";
    return json.str();
  }

  const std::string& version() const { return version_; }

 private:
  int threads_;
  int inter_ = 1;
  std::string level_;
  std::string free_dims_;
  std::string library_;
  std::string version_;
  std::unique_ptr<Ort::Env> env_;
  std::unique_ptr<Ort::Session> session_;
  // Created once the API is initialised: even an empty Ort object calls the API when destroyed.
  std::optional<Ort::MemoryInfo> memory_;
  std::string input_name_;
  std::vector<std::string> output_names_;
  std::vector<const char*> output_ptrs_;
  std::vector<Ort::Value> results_;
  ONNXTensorElementDataType input_type_ = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};

std::string loaded_version;

}  // namespace

std::unique_ptr<Session> load_session(const std::string& model_path, int threads,
                                      const Config& config) {
  auto session = std::make_unique<OnnxRuntimeSession>(model_path, threads, config);
  loaded_version = session->version();
  return session;
}

const char* framework_version() {
  // Known once a session has opened the library (the C++ runner asks after loading).
  return loaded_version.empty() ? "unknown" : loaded_version.c_str();
}

}  // namespace db
