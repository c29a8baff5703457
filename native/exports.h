// Each source file exports its group of functions onto the addon object.
#pragma once

#include <napi.h>

#include <type_traits>

#include "args.h"

void ExportObject(Napi::Env env, Napi::Object exports);
void ExportMaps(Napi::Env env, Napi::Object exports);
void ExportFds(Napi::Env env, Napi::Object exports);
void ExportProgs(Napi::Env env, Napi::Object exports);
void ExportTc(Napi::Env env, Napi::Object exports);
void ExportXdp(Napi::Env env, Napi::Object exports);
void ExportBtf(Napi::Env env, Napi::Object exports);
void ExportNetns(Napi::Env env, Napi::Object exports);
void ExportCgroup(Napi::Env env, Napi::Object exports);
void ExportIpvs(Napi::Env env, Napi::Object exports);
void ExportIpvsLink(Napi::Env env, Napi::Object exports);
void ExportIpset(Napi::Env env, Napi::Object exports);
void ExportIter(Napi::Env env, Napi::Object exports);

// Exports `callback` as `name`; a malformed argument it finds reaches JS as a TypeError.
template <typename Callback>
void Export(Napi::Env env, Napi::Object exports, const char* name, Callback callback) {
  auto checked = [callback](const Napi::CallbackInfo& info) -> Napi::Value {
    try {
      if constexpr (std::is_void_v<decltype(callback(info))>) {
        callback(info);
        return info.Env().Undefined();
      } else {
        return callback(info);
      }
    } catch (const ArgumentError& err) {
      throw Napi::TypeError::New(info.Env(), err.what());
    }
  };
  exports.Set(name, Napi::Function::New(env, checked, name));
}
