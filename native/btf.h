// Layouts of BTF types as JS objects, shared by btfStructs() (an ELF's BTF),
// mapLayouts() (a loaded map's BTF in the kernel) and BpfObject.maps().
#pragma once

#include <bpf/btf.h>
#include <napi.h>

#include <cstdint>
#include <string>

// { size, members: [{ name, offset, size }] } of the type type_id names,
// through typedefs and qualifiers. A type other than a struct (a __u32 map
// key) is one unnamed member covering all of it, so callers compare every
// layout the same way. what names the type in errors.
Napi::Object TypeLayout(Napi::Env env, const btf* types, uint32_t type_id, const std::string& what);
