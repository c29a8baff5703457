// Map element operations on map fds. Key and value sizes come from the
// kernel's map info, and buffers of any other length are refused: the
// kernel would read or write past them.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "args.h"
#include "btf.h"
#include "errors.h"
#include "exports.h"
#include "opts.h"

namespace {

// The map behind the fd that every function here takes first.
struct Map {
  int fd;
  bpf_map_info info;
  std::string name;  // for error messages
};

Map MapArg(const Args& args) {
  int fd = args.Int(0, "fd");
  Map map{fd, {}, Numbered("map fd", fd)};
  uint32_t len = sizeof(map.info);
  Check(args.Env(), bpf_obj_get_info_by_fd(fd, &map.info, &len), "bpf_obj_get_info_by_fd", map.name);
  return map;
}

// A buffer of count records of record_size bytes.
Napi::Buffer<uint8_t> RecordsArg(const Args& args, size_t i, const char* name, size_t record_size,
                                 size_t count = 1) {
  Napi::Buffer<uint8_t> buffer = args.Buffer(i, name);
  size_t expected = record_size * count;
  if (buffer.Length() != expected) {
    std::string got = std::to_string(buffer.Length());
    args.Fail(name, std::to_string(expected) + " bytes long for this map, not " + got);
  }
  return buffer;
}

// Map types without batch support answer EINVAL, ENOTSUPP or EOPNOTSUPP.
bool BatchUnsupported(int ret) { return ret == -EINVAL || ret == -kEnotsupp || ret == -EOPNOTSUPP; }

// What one lookup copies out: per-CPU maps hold one 8-byte aligned value
// for every possible CPU. Returns a negative errno on failure.
long LookupValueSize(const bpf_map_info& info) {
  bool per_cpu = info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
                 info.type == BPF_MAP_TYPE_PERCPU_ARRAY;
  if (!per_cpu) return info.value_size;
  int cpus = libbpf_num_possible_cpus();
  if (cpus < 0) return cpus;
  return long{(info.value_size + 7) / 8 * 8} * cpus;
}

// LookupValueSize, or throws.
size_t ValueSize(Napi::Env env, const Map& map) {
  long size = LookupValueSize(map.info);
  if (size < 0) Check(env, static_cast<int>(size), "libbpf_num_possible_cpus", map.name);
  return size;
}

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Args args(info, "mapLookup");
  Map map = MapArg(args);
  Napi::Buffer<uint8_t> key = RecordsArg(args, 1, "key", map.info.key_size);
  size_t value_size = ValueSize(info.Env(), map);
  auto value = Napi::Buffer<uint8_t>::New(info.Env(), value_size);
  int ret = bpf_map_lookup_elem(map.fd, key.Data(), value.Data());
  if (ret == -ENOENT) return info.Env().Null();
  Check(info.Env(), ret, "bpf_map_lookup_elem", map.name);
  return value;
}

void MapUpdate(const Napi::CallbackInfo& info) {
  Args args(info, "mapUpdate");
  Map map = MapArg(args);
  Napi::Buffer<uint8_t> key = RecordsArg(args, 1, "key", map.info.key_size);
  Napi::Buffer<uint8_t> value = RecordsArg(args, 2, "value", ValueSize(info.Env(), map));
  uint32_t flags = args.OptionalUint32(3, "flags", BPF_ANY);
  int ret = bpf_map_update_elem(map.fd, key.Data(), value.Data(), flags);
  Check(info.Env(), ret, "bpf_map_update_elem", map.name);
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Args args(info, "mapDelete");
  Map map = MapArg(args);
  Napi::Buffer<uint8_t> key = RecordsArg(args, 1, "key", map.info.key_size);
  int ret = bpf_map_delete_elem(map.fd, key.Data());
  if (ret != -ENOENT) Check(info.Env(), ret, "bpf_map_delete_elem", map.name);
  return Napi::Boolean::New(info.Env(), ret == 0);
}

// Elements per update syscall. A hash map without preallocation takes each
// new element from a per-CPU cache the kernel refills in the background
// (bpf_mem_alloc; a per-CPU map's values from the per-CPU allocator's
// atomic pool): one call of a million elements drains it and fails with
// ENOMEM, calls of this size give it time to refill (docs/ebpf-maps.md).
constexpr uint32_t kUpdateBatchChunk = 1024;
// Tries at a chunk that makes no progress for ENOMEM, 1 ms apart, before
// the error stands.
constexpr int kEnomemTries = 100;

void MapUpdateBatch(const Napi::CallbackInfo& info) {
  Args args(info, "mapUpdateBatch");
  Map map = MapArg(args);
  uint32_t count = args.Uint32(3, "count");
  Napi::Buffer<uint8_t> keys = RecordsArg(args, 1, "keys", map.info.key_size, count);
  size_t value_size = ValueSize(info.Env(), map);
  Napi::Buffer<uint8_t> values = RecordsArg(args, 2, "values", value_size, count);

  auto opts = Opts<bpf_map_batch_opts>();
  int stalled = 0;
  for (uint32_t at = 0; at < count;) {
    uint32_t done = std::min(kUpdateBatchChunk, count - at);
    int ret = bpf_map_update_batch(map.fd, keys.Data() + size_t{at} * map.info.key_size,
                                   values.Data() + size_t{at} * value_size, &done, &opts);
    // The kernel says how many it wrote, also when it failed.
    at += done;
    if (done > 0) stalled = 0;
    if (ret == 0) continue;
    if (ret == -ENOMEM && ++stalled < kEnomemTries) {
      usleep(1000);
      continue;
    }
    if (!BatchUnsupported(ret)) Check(info.Env(), ret, "bpf_map_update_batch", map.name);
    // Updates are idempotent: redo the rest, one at a time.
    for (size_t i = at; i < count; i++) {
      const uint8_t* key = keys.Data() + i * map.info.key_size;
      const uint8_t* value = values.Data() + i * value_size;
      Check(info.Env(), bpf_map_update_elem(map.fd, key, value, BPF_ANY), "bpf_map_update_elem", map.name);
    }
    return;
  }
}

// Absent keys are skipped, as mapDelete() tolerates them: an LRU map may
// have evicted them meanwhile.
void MapDeleteBatch(const Napi::CallbackInfo& info) {
  Args args(info, "mapDeleteBatch");
  Map map = MapArg(args);
  uint32_t count = args.Uint32(2, "count");
  Napi::Buffer<uint8_t> keys = RecordsArg(args, 1, "keys", map.info.key_size, count);
  if (count == 0) return;

  auto opts = Opts<bpf_map_batch_opts>();
  uint32_t done = count;
  int ret = bpf_map_delete_batch(map.fd, keys.Data(), &done, &opts);
  if (ret == 0) return;
  if (ret != -ENOENT && !BatchUnsupported(ret)) Check(info.Env(), ret, "bpf_map_delete_batch", map.name);
  // The batch stopped at an absent key, or is unsupported: go one at a time.
  for (size_t i = 0; i < count; i++) {
    ret = bpf_map_delete_elem(map.fd, keys.Data() + i * map.info.key_size);
    if (ret != -ENOENT) Check(info.Env(), ret, "bpf_map_delete_elem", map.name);
  }
}

Napi::Value MapDump(const Napi::CallbackInfo& info) {
  Args args(info, "mapDump");
  Map map = MapArg(args);
  std::vector<uint8_t> keys, values;
  std::vector<uint8_t> key(map.info.key_size), next(map.info.key_size), value(ValueSize(info.Env(), map));
  uint32_t count = 0;
  const void* prev = nullptr;  // asks for the first key
  // Bounded because a hash map restarts from its first key when the previous
  // key was deleted meanwhile.
  for (uint32_t i = 0; i < map.info.max_entries; i++) {
    int ret = bpf_map_get_next_key(map.fd, prev, next.data());
    if (ret == -ENOENT) break;  // no more keys
    Check(info.Env(), ret, "bpf_map_get_next_key", map.name);
    ret = bpf_map_lookup_elem(map.fd, next.data(), value.data());
    if (ret != -ENOENT) {  // ENOENT: deleted since get_next_key
      Check(info.Env(), ret, "bpf_map_lookup_elem", map.name);
      keys.insert(keys.end(), next.begin(), next.end());
      values.insert(values.end(), value.begin(), value.end());
      count++;
    }
    key.swap(next);
    prev = key.data();
  }
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("keys", Napi::Buffer<uint8_t>::Copy(info.Env(), keys.data(), keys.size()));
  result.Set("values", Napi::Buffer<uint8_t>::Copy(info.Env(), values.data(), values.size()));
  result.Set("count", Napi::Number::New(info.Env(), count));
  return result;
}

// Counts a map's entries on a worker thread, so that a map of any size
// never blocks the event loop. Walks with BPF_MAP_LOOKUP_BATCH rather than
// get_next_key: its cursor is a bucket index, so entries deleted meanwhile
// (an LRU map evicting under load) cannot restart the walk and count twice.
class MapCountWorker : public Napi::AsyncWorker {
 public:
  // Takes ownership of fd, a duplicate: the caller may close its own fd
  // while the walk runs, and that number may then name another object.
  MapCountWorker(Napi::Promise::Deferred deferred, int fd, const Map& map)
      : Napi::AsyncWorker(deferred.Env(), "mapCount"), deferred_(deferred), fd_(fd), map_(map) {}
  ~MapCountWorker() override { close(fd_); }

  void Execute() override {
    // The kernel copies values too.
    long lookup_size = LookupValueSize(map_.info);
    if (lookup_size < 0) return Fail(static_cast<int>(lookup_size), "libbpf_num_possible_cpus");
    size_t value_size = lookup_size;
    // Far more than one hash bucket holds: the kernel refuses (ENOSPC) a
    // chunk smaller than the bucket it is at.
    constexpr uint32_t kChunk = 4096;
    std::vector<uint8_t> keys(size_t{kChunk} * map_.info.key_size), values(kChunk * value_size);
    // The cursor is a u32 bucket index for hash maps, a key for arrays.
    size_t cursor_size = std::max<size_t>(map_.info.key_size, sizeof(uint32_t));
    std::vector<uint8_t> in(cursor_size), out(cursor_size);
    auto opts = Opts<bpf_map_batch_opts>();
    const void* cursor = nullptr;  // from the start
    for (;;) {
      uint32_t n = kChunk;
      int ret = bpf_map_lookup_batch(fd_, const_cast<void*>(cursor), out.data(), keys.data(), values.data(), &n,
                                     &opts);
      if (ret < 0 && ret != -ENOENT) return Fail(ret, "bpf_map_lookup_batch");
      count_ += n;
      if (ret == -ENOENT) return;  // walked to the end
      in.swap(out);
      cursor = in.data();
    }
  }

  void OnOK() override {
    if (err_ != 0) {
      deferred_.Reject(ErrnoError(Env(), err_, op_, map_.name).Value());
    } else {
      deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(count_)));
    }
  }

 private:
  void Fail(int ret, const char* op) {
    err_ = -ret;
    op_ = op;
  }

  Napi::Promise::Deferred deferred_;
  int fd_;
  Map map_;
  uint64_t count_ = 0;
  int err_ = 0;
  std::string op_;
};

Napi::Value MapCount(const Napi::CallbackInfo& info) {
  auto deferred = Napi::Promise::Deferred::New(info.Env());
  try {
    Map map = MapArg(Args(info, "mapCount"));
    int fd = fcntl(map.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) ThrowErrno(info.Env(), errno, "fcntl F_DUPFD_CLOEXEC", map.name);
    (new MapCountWorker(deferred, fd, map))->Queue();
  } catch (const Napi::Error& err) {
    deferred.Reject(err.Value());
  } catch (const ArgumentError& err) {
    deferred.Reject(Napi::TypeError::New(info.Env(), err.what()).Value());
  }
  return deferred.Promise();
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Map map = MapArg(Args(info, "mapInfo"));
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("id", Napi::Number::New(info.Env(), map.info.id));
  result.Set("type", Napi::Number::New(info.Env(), map.info.type));
  result.Set("name", Napi::String::New(info.Env(), map.info.name));
  result.Set("keySize", Napi::Number::New(info.Env(), map.info.key_size));
  result.Set("valueSize", Napi::Number::New(info.Env(), map.info.value_size));
  result.Set("maxEntries", Napi::Number::New(info.Env(), map.info.max_entries));
  result.Set("flags", Napi::Number::New(info.Env(), map.info.map_flags));
  return result;
}

// The key and value layouts from the BTF the map was created with, or null
// for a map created without BTF.
Napi::Value MapLayouts(const Napi::CallbackInfo& info) {
  Map map = MapArg(Args(info, "mapLayouts"));
  if (map.info.btf_id == 0 || map.info.btf_key_type_id == 0 || map.info.btf_value_type_id == 0) {
    return info.Env().Null();
  }
  std::unique_ptr<btf, decltype(&btf__free)> types(btf__load_from_kernel_by_id(map.info.btf_id), btf__free);
  if (!types) {
    int err = errno;
    ThrowErrno(info.Env(), err, "btf__load_from_kernel_by_id", map.name);
  }
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("key", TypeLayout(info.Env(), types.get(), map.info.btf_key_type_id, "key of " + map.name));
  result.Set("value", TypeLayout(info.Env(), types.get(), map.info.btf_value_type_id, "value of " + map.name));
  return result;
}

}  // namespace

void ExportMaps(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "mapLookup", MapLookup);
  Export(env, exports, "mapUpdate", MapUpdate);
  Export(env, exports, "mapDelete", MapDelete);
  Export(env, exports, "mapUpdateBatch", MapUpdateBatch);
  Export(env, exports, "mapDeleteBatch", MapDeleteBatch);
  Export(env, exports, "mapDump", MapDump);
  Export(env, exports, "mapCount", MapCount);
  Export(env, exports, "mapInfo", MapInfo);
  Export(env, exports, "mapLayouts", MapLayouts);
}
