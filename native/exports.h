// Each source file exports its group of functions onto the addon object.
#pragma once

#include <napi.h>

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

template <typename Callback>
void Export(Napi::Env env, Napi::Object exports, const char* name, Callback callback) {
  exports.Set(name, Napi::Function::New(env, callback, name));
}
