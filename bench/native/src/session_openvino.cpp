// OpenVINO through its C++ API: the same configuration as bench/backends/openvino.py at
// batch 1 (one infer request, the LATENCY hint, the thread count, the inference precision
// asked for), with the input tensor wrapping the caller's buffer instead of a copy.
#include <openvino/openvino.hpp>

#include <sstream>

#include "session.hpp"

namespace db {
namespace {

const char* precision_name(const ov::element::Type& type) {
  if (type == ov::element::f32) return "fp32";
  if (type == ov::element::bf16) return "bf16";
  if (type == ov::element::f16) return "fp16";
  return "unknown";
}

ov::PartialShape parse_dims(const std::string& text) {
  std::vector<int64_t> dims;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) dims.push_back(std::stoll(part));
  return ov::PartialShape(std::vector<ov::Dimension>(dims.begin(), dims.end()));
}

class OpenVinoSession : public Session {
 public:
  OpenVinoSession(const std::string& path, int threads, const Config& config) {
    std::shared_ptr<ov::Model> model = core_.read_model(path);
    if (model->inputs().size() != 1) throw std::invalid_argument("the model must have one input");
    ov::AnyMap properties{{ov::hint::performance_mode.name(), ov::hint::PerformanceMode::LATENCY},
                          {ov::inference_num_threads.name(), threads}};
    // The Python side passes bench/backends/openvino.py's compile properties, as OpenVINO's
    // string names and values, which it parses itself (e.g. INFERENCE_PRECISION_HINT=f32);
    // db.static_shape (comma-separated dims) reshapes the model first, as the backend does.
    for (const auto& [key, value] : config) {
      if (key == "db.static_shape") {
        model->reshape(parse_dims(value));
        static_shape_ = value;
      } else {
        properties[key] = value;
      }
    }
    compiled_ = core_.compile_model(model, "CPU", properties);
    request_ = compiled_.create_infer_request();
  }

  std::vector<Output> run(const float* input, const std::vector<int64_t>& shape) override {
    ov::Shape dims(shape.begin(), shape.end());
    // Wraps the caller's memory: OpenVINO reads the input where it lies.
    ov::Tensor tensor(ov::element::f32, dims, const_cast<float*>(input));
    request_.set_input_tensor(tensor);
    request_.infer();
    std::vector<Output> outputs;
    for (size_t i = 0; i < compiled_.outputs().size(); ++i) {
      ov::Tensor out = request_.get_output_tensor(i);
      if (out.get_element_type() != ov::element::f32) {
        throw std::runtime_error("output " + std::to_string(i) + " is " +
                                 out.get_element_type().get_type_name() + ", not f32");
      }
      const ov::Shape& s = out.get_shape();
      outputs.push_back({out.data<const float>(), std::vector<int64_t>(s.begin(), s.end())});
    }
    return outputs;
  }

  std::string runtime_info_json() const override {
    auto precision = compiled_.get_property(ov::hint::inference_precision);
    auto threads = compiled_.get_property(ov::inference_num_threads);
    auto mode = compiled_.get_property(ov::hint::performance_mode);
    std::ostringstream hint;
    hint << mode;
    std::ostringstream json;
    json << "{\"precision_run\": " << json_string(precision_name(precision))
         << ", \"inference_precision\": " << json_string(precision.get_type_name())
         << ", \"threads\": " << threads << ", \"hint\": " << json_string(hint.str())
         << ", \"infer_requests\": 1, \"static_shape\": " << json_string(static_shape_)
         << ", \"read_back\": [\"precision_run\", \"threads\", \"hint\"]}";
    return json.str();
  }

 private:
  std::string static_shape_;  // empty: the model's own (dynamic) input shape
  ov::Core core_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
};

}  // namespace

std::unique_ptr<Session> load_session(const std::string& model_path, int threads,
                                      const Config& config) {
  return std::make_unique<OpenVinoSession>(model_path, threads, config);
}

const char* framework_version() {
  static const std::string version = ov::get_openvino_version().buildNumber;
  return version.c_str();
}

}  // namespace db
