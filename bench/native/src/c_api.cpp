// The C ABI of deploybench.h over a framework's db::Session: argument checks, and every C++
// exception turned into an error message, since none may cross into C or Python.
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>

#include "../deploybench.h"
#include "session.hpp"

struct db_session {
  std::unique_ptr<db::Session> impl;
};

namespace {

void set_error(char* err, size_t err_len, const std::string& message) {
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", message.c_str());
  }
}

db::Config parse_config(const char* text) {
  db::Config config;
  std::stringstream stream(text == nullptr ? "" : text);
  std::string pair;
  while (std::getline(stream, pair, ';')) {
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("config entry without '=': " + pair);
    config[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return config;
}

}  // namespace

namespace db {

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace db

extern "C" {

int db_api_version(void) { return DB_API_VERSION; }

const char* db_framework_version(void) { return db::framework_version(); }

db_session* db_load(const char* model_path, int threads, const char* config, char* err,
                    size_t err_len) {
  try {
    if (model_path == nullptr || threads < 1) throw std::invalid_argument("model path and threads >= 1 needed");
    auto impl = db::load_session(model_path, threads, parse_config(config));
    return new db_session{std::move(impl)};
  } catch (const std::exception& exc) {
    set_error(err, err_len, exc.what());
    return nullptr;
  }
}

int db_infer(db_session* session, const float* input, const int64_t* shape, int rank,
             int n_outputs, float* const* outputs, const int64_t* capacity,
             int64_t* out_shapes, int* out_ranks, char* err, size_t err_len) {
  try {
    if (session == nullptr || input == nullptr || shape == nullptr) {
      throw std::invalid_argument("no session, input or shape");
    }
    if (rank < 1 || rank > DB_MAX_RANK) throw std::invalid_argument("input rank out of range");
    std::vector<int64_t> dims(shape, shape + rank);
    auto results = session->impl->run(input, dims);
    if (static_cast<int>(results.size()) != n_outputs) {
      throw std::invalid_argument("the model has " + std::to_string(results.size()) +
                                  " outputs, the caller gave " + std::to_string(n_outputs) +
                                  " buffers");
    }
    for (int i = 0; i < n_outputs; ++i) {
      const auto& out = results[i];
      if (out.shape.size() > DB_MAX_RANK) throw std::runtime_error("output rank too large");
      int64_t elems = 1;
      for (auto d : out.shape) elems *= d;
      if (elems != capacity[i]) {
        throw std::invalid_argument("output " + std::to_string(i) + " has " +
                                    std::to_string(elems) + " elements, the caller's buffer " +
                                    std::to_string(capacity[i]));
      }
      std::memcpy(outputs[i], out.data, static_cast<size_t>(elems) * sizeof(float));
      out_ranks[i] = static_cast<int>(out.shape.size());
      for (size_t d = 0; d < out.shape.size(); ++d) out_shapes[i * DB_MAX_RANK + d] = out.shape[d];
    }
    return 0;
  } catch (const std::exception& exc) {
    set_error(err, err_len, exc.what());
    return 1;
  }
}

int db_runtime_info(db_session* session, char* json, size_t json_len) {
  try {
    std::string info = session->impl->runtime_info_json();
    if (info.size() + 1 > json_len) return 1;
    std::memcpy(json, info.c_str(), info.size() + 1);
    return 0;
  } catch (const std::exception& exc) {
    set_error(json, json_len, exc.what());
    return 1;
  }
}

void db_free(db_session* session) { delete session; }

}  // extern "C"
