// IPVS virtual servers and their real servers, over the kernel's "IPVS"
// generic netlink family: one message per change, as ipvsadm sends them,
// but many changes per sendmsg.
// Services addressed by family, ip:port:protocol (no fwmark services); a
// service's real servers are of its family.
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <netinet/in.h>

#include <cerrno>
#include <initializer_list>
#include <map>
#include <memory>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "ipvs_netlink.h"

namespace {

struct Service {
  Address address;
  uint16_t protocol;
  uint16_t port;
};

struct Dest {
  Address address;
  uint16_t port;
};

std::string ProtocolName(uint16_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_SCTP: return "SCTP";
  }
  return "protocol " + std::to_string(protocol);
}

// The family's socket and id, opened on first use in the namespace of that
// first call (kube-lb runs entirely in one network namespace).
struct Ipvs {
  std::unique_ptr<NetlinkSocket> socket;
  uint16_t family = 0;
};

Ipvs& Connect(Napi::Env env) {
  static Ipvs ipvs;
  if (ipvs.socket) return ipvs;
  auto socket = std::make_unique<NetlinkSocket>(env, NETLINK_GENERIC);
  nlmsghdr* nlh = socket->Begin(GENL_ID_CTRL, 0);
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = CTRL_CMD_GETFAMILY;
  genl->version = 1;
  mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME);
  uint16_t family = 0;
  try {
    socket->Request(env, nlh, "resolve", "generic netlink family " IPVS_GENL_NAME, [&](const nlmsghdr* reply) {
      auto attrs = ParseMessage(reply, sizeof(genlmsghdr), CTRL_ATTR_MAX);
      if (attrs[CTRL_ATTR_FAMILY_ID]) family = mnl_attr_get_u16(attrs[CTRL_ATTR_FAMILY_ID]);
    });
  } catch (Napi::Error& error) {
    error.Set("message", Napi::String::New(env, error.Message() + " (the kernel has no IPVS: modprobe ip_vs)"));
    throw;
  }
  ipvs.socket = std::move(socket);
  ipvs.family = family;
  return ipvs;
}

// The genetlink header after a message's netlink header.
void PutGenl(nlmsghdr* nlh, uint8_t cmd) {
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = cmd;
  genl->version = IPVS_GENL_VERSION;
}

nlmsghdr* Begin(Napi::Env env, uint8_t cmd, uint16_t flags) {
  Ipvs& ipvs = Connect(env);
  nlmsghdr* nlh = ipvs.socket->Begin(ipvs.family, flags);
  PutGenl(nlh, cmd);
  return nlh;
}

// A change's message, queued on its batch's socket to go with the others;
// `family` is the IPVS family's id, as Connect resolved it.
nlmsghdr* BeginQueued(NetlinkSocket& socket, uint16_t family, uint8_t cmd) {
  nlmsghdr* nlh = socket.BeginQueued(family, 0);
  PutGenl(nlh, cmd);
  return nlh;
}

// "[ip]:port" for IPv6, as ipvsadm prints it.
std::string HostPort(const std::string& family, const std::string& ip, uint32_t port) {
  return (family == "IPv6" ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

// "TCP 10.96.0.10:80", from the arguments ServiceArgs took, for messages.
template <typename Arguments>
std::string ServiceText(const Arguments& args) {
  return ProtocolName(static_cast<uint16_t>(args.Uint32(2, "protocol"))) + " " +
         HostPort(args.String(0, "family"), args.String(1, "address"), args.Uint32(3, "port"));
}

// "10.244.0.11:8080", from the arguments DestArgs took, for messages.
std::string DestText(const Fields& args) { return HostPort(args.String(0, "family"), args.String(4, "destAddress"), args.Uint32(5, "destPort")); }

// Arguments (family, address, protocol, port, ...): family is "IPv4" or "IPv6".
template <typename Arguments>
Service ServiceArgs(const Arguments& args, const char* fn) {
  std::string family = args.String(0, "family");
  std::string ip = args.String(1, "address");
  uint16_t protocol = static_cast<uint16_t>(args.Uint32(2, "protocol", 1, 255));
  uint16_t port = static_cast<uint16_t>(args.Uint32(3, "port", 1, 65535));
  return {ParseAddress(fn, family, ip), protocol, port};
}

// A real server of `svc`: of the service's family (masquerading cannot change it).
Dest DestArgs(const Fields& args, const char* fn, const Service& svc) {
  std::string ip = args.String(4, "destAddress");
  uint16_t port = static_cast<uint16_t>(args.Uint32(5, "destPort", 1, 65535));
  return {ParseAddress(fn, FamilyName(svc.address.af), ip), port};
}

// How a service schedules: its scheduler, and how long a client sticks to
// its real server (IPVS persistence, ipvsadm -p); 0 for not at all.
struct Scheduling {
  std::string scheduler;
  uint32_t persistence;
};

// The service's identity; with its scheduling, every field NEW/SET_SERVICE need.
void PutService(nlmsghdr* nlh, const Service& svc, const Scheduling* scheduling) {
  nlattr* nest = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_AF, svc.address.af);
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PROTOCOL, svc.protocol);
  mnl_attr_put(nlh, IPVS_SVC_ATTR_ADDR, svc.address.size(), svc.address.bytes);
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PORT, htons(svc.port));
  if (scheduling) {
    mnl_attr_put_strz(nlh, IPVS_SVC_ATTR_SCHED_NAME, scheduling->scheduler.c_str());
    ip_vs_flags flags{scheduling->persistence > 0 ? IP_VS_SVC_F_PERSISTENT : 0u, ~0u};
    mnl_attr_put(nlh, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags);
    mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_TIMEOUT, scheduling->persistence);
    // One address per service: a mask of 32 bits for IPv4, a prefix length of 128 for IPv6 (as ipvsadm sends them).
    mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_NETMASK, svc.address.af == AF_INET6 ? 128 : 0xffffffff);
  }
  mnl_attr_nest_end(nlh, nest);
}

// The destination's identity; with a weight, every field NEW/SET_DEST need.
void PutDest(nlmsghdr* nlh, const Dest& dest, const uint32_t* weight) {
  nlattr* nest = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_DEST);
  mnl_attr_put(nlh, IPVS_DEST_ATTR_ADDR, dest.address.size(), dest.address.bytes);
  mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_PORT, htons(dest.port));
  mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_ADDR_FAMILY, dest.address.af);
  if (weight) {
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_FWD_METHOD, IP_VS_CONN_F_MASQ);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_WEIGHT, *weight);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_U_THRESH, 0);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_L_THRESH, 0);
  }
  mnl_attr_nest_end(nlh, nest);
}

// The nested attribute `type` of a genetlink reply, parsed up to max.
std::vector<const nlattr*> ReplyNest(const nlmsghdr* reply, uint16_t type, uint16_t max) {
  const nlattr* nest = ParseMessage(reply, sizeof(genlmsghdr), type)[type];
  if (!nest) return {};
  return ParseNested(nest, max);
}

// addService(family, address, protocol, port, scheduler, persistence) / setService(...)
void WriteService(NetlinkSocket& socket, uint16_t family, const Fields& args, const char* fn, uint8_t cmd) {
  Service svc = ServiceArgs(args, fn);
  Scheduling scheduling{args.String(4, "scheduler"), args.Uint32(5, "persistence", 0, INT32_MAX)};
  nlmsghdr* nlh = BeginQueued(socket, family, cmd);
  PutService(nlh, svc, &scheduling);
  socket.Enqueue(nlh);
}

std::string WrittenServiceText(const Fields& args) {
  return "IPVS service " + ServiceText(args) + " (scheduler " + args.String(4, "scheduler") + ", persistence " +
         std::to_string(args.Uint32(5, "persistence")) + " s)";
}

void AddService(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  WriteService(socket, family, args, "ipvsApply addService", IPVS_CMD_NEW_SERVICE);
}
void SetService(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  WriteService(socket, family, args, "ipvsApply setService", IPVS_CMD_SET_SERVICE);
}

void DeleteService(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  Service svc = ServiceArgs(args, "ipvsApply deleteService");
  nlmsghdr* nlh = BeginQueued(socket, family, IPVS_CMD_DEL_SERVICE);
  PutService(nlh, svc, nullptr);
  socket.Enqueue(nlh);
}

// ipvsServices(): every IPv4 and IPv6 address:port service as {family, address, protocol, port, scheduler, persistence}.
Napi::Value Services(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env);
  nlmsghdr* nlh = Begin(env, IPVS_CMD_GET_SERVICE, 0);
  Connect(env).socket->Dump(env, nlh, "list", "IPVS services", [&](const nlmsghdr* reply) {
    auto a = ReplyNest(reply, IPVS_CMD_ATTR_SERVICE, IPVS_SVC_ATTR_MAX);
    if (a.empty() || !a[IPVS_SVC_ATTR_AF]) return;
    int af = mnl_attr_get_u16(a[IPVS_SVC_ATTR_AF]);
    if (af != AF_INET && af != AF_INET6) return;
    if (!a[IPVS_SVC_ATTR_ADDR] || !a[IPVS_SVC_ATTR_PROTOCOL] || !a[IPVS_SVC_ATTR_PORT]) return;
    Napi::Object svc = Napi::Object::New(env);
    svc.Set("family", FamilyName(af));
    svc.Set("address", FormatAddress(af, mnl_attr_get_payload(a[IPVS_SVC_ATTR_ADDR])));
    svc.Set("protocol", mnl_attr_get_u16(a[IPVS_SVC_ATTR_PROTOCOL]));
    svc.Set("port", ntohs(mnl_attr_get_u16(a[IPVS_SVC_ATTR_PORT])));
    svc.Set("scheduler", a[IPVS_SVC_ATTR_SCHED_NAME] ? mnl_attr_get_str(a[IPVS_SVC_ATTR_SCHED_NAME]) : "");
    bool persistent = a[IPVS_SVC_ATTR_FLAGS] &&
                      (static_cast<const ip_vs_flags*>(mnl_attr_get_payload(a[IPVS_SVC_ATTR_FLAGS]))->flags & IP_VS_SVC_F_PERSISTENT);
    svc.Set("persistence", persistent && a[IPVS_SVC_ATTR_TIMEOUT] ? mnl_attr_get_u32(a[IPVS_SVC_ATTR_TIMEOUT]) : 0u);
    result.Set(result.Length(), svc);
  });
  return result;
}

// addDest(family, address, protocol, port, destAddress, destPort, weight) / setDest(...)
void WriteDest(NetlinkSocket& socket, uint16_t family, const Fields& args, const char* fn, uint8_t cmd) {
  Service svc = ServiceArgs(args, fn);
  Dest dest = DestArgs(args, fn, svc);
  uint32_t weight = args.Uint32(6, "weight", 0, INT32_MAX);
  nlmsghdr* nlh = BeginQueued(socket, family, cmd);
  PutService(nlh, svc, nullptr);
  PutDest(nlh, dest, &weight);
  socket.Enqueue(nlh);
}

std::string WrittenDestText(const Fields& args) {
  return "IPVS real server " + DestText(args) + " (weight " + std::to_string(args.Uint32(6, "weight")) + ") of " + ServiceText(args);
}

void AddDest(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  WriteDest(socket, family, args, "ipvsApply addDest", IPVS_CMD_NEW_DEST);
}
void SetDest(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  WriteDest(socket, family, args, "ipvsApply setDest", IPVS_CMD_SET_DEST);
}

void DeleteDest(NetlinkSocket& socket, uint16_t family, const Fields& args) {
  Service svc = ServiceArgs(args, "ipvsApply deleteDest");
  Dest dest = DestArgs(args, "ipvsApply deleteDest", svc);
  nlmsghdr* nlh = BeginQueued(socket, family, IPVS_CMD_DEL_DEST);
  PutService(nlh, svc, nullptr);
  PutDest(nlh, dest, nullptr);
  socket.Enqueue(nlh);
}

// Each change queues its message; what it does is told (operation, object) only if it fails.
struct Change {
  void (*queue)(NetlinkSocket& socket, uint16_t family, const Fields&);
  size_t fields;  // after the name
  const char* op;
  std::string (*object)(const Fields&);
};

// The change a line names ("addService ..."); `index` is the line's, for the error.
const Change& ChangeOf(const std::string& line, size_t index) {
  static const std::map<std::string, Change> kChanges = {
      {"addService", {AddService, 6, "add", WrittenServiceText}},
      {"setService", {SetService, 6, "update", WrittenServiceText}},
      {"deleteService", {DeleteService, 4, "delete", [](const Fields& args) { return "IPVS service " + ServiceText(args); }}},
      {"addDest", {AddDest, 7, "add", WrittenDestText}},
      {"setDest", {SetDest, 7, "update", WrittenDestText}},
      {"deleteDest", {DeleteDest, 6, "delete", [](const Fields& args) { return "IPVS real server " + DestText(args) + " of " + ServiceText(args); }}},
  };
  auto it = kChanges.find(line.substr(0, line.find(' ')));
  if (it == kChanges.end()) {
    throw ArgumentError("ipvsApply: change " + std::to_string(index) + " must be a line \"name ...arguments\" with a name of addService, setService, deleteService, addDest, setDest, deleteDest");
  }
  return it->second;
}

// ipvsApply(changes): each change a line "name ...its arguments" (Fields),
// its arguments as above, applied in order, off the event loop (ApplyLines);
// resolves to each change's null or error. The kernel goes on past a failed
// change, as separate calls would.
Napi::Value Apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint16_t family = Connect(env).family;
  LineBatch batch{
      "ipvsApply",
      [family](NetlinkSocket& socket, const std::string& line, size_t index) {
        const Change& change = ChangeOf(line, index);
        Fields args(line, 1, "ipvsApply");
        args.RequireCount(change.fields);
        change.queue(socket, family, args);
      },
      [](const std::string& line) {
        const Change& change = ChangeOf(line, 0);
        return std::make_pair(std::string(change.op), change.object(Fields(line, 1, "ipvsApply")));
      },
      nullptr,
  };
  // The batch's own socket: the worker sends on it while the shared one may dump.
  return ApplyLines(env, info[0], info[1], std::make_unique<NetlinkSocket>(env, NETLINK_GENERIC), std::move(batch));
}

// ipvsSetTimeouts(tcp, tcpFin, udp): IPVS's connection timeouts in seconds,
// as `ipvsadm --set` sets them; the kernel leaves a 0 as it is.
void SetTimeouts(const Napi::CallbackInfo& info) {
  Args args(info, "ipvsSetTimeouts");
  uint32_t tcp = args.Uint32(0, "tcp", 0, INT32_MAX);
  uint32_t tcpFin = args.Uint32(1, "tcpFin", 0, INT32_MAX);
  uint32_t udp = args.Uint32(2, "udp", 0, INT32_MAX);
  nlmsghdr* nlh = Begin(info.Env(), IPVS_CMD_SET_CONFIG, 0);
  mnl_attr_put_u32(nlh, IPVS_CMD_ATTR_TIMEOUT_TCP, tcp);
  mnl_attr_put_u32(nlh, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, tcpFin);
  mnl_attr_put_u32(nlh, IPVS_CMD_ATTR_TIMEOUT_UDP, udp);
  Connect(info.Env()).socket->Request(info.Env(), nlh, "set", "IPVS timeouts (tcp " + std::to_string(tcp) + " s, tcpfin " +
                                                                  std::to_string(tcpFin) + " s, udp " + std::to_string(udp) + " s)");
}

// ipvsDests(family, address, protocol, port): the service's real servers as
// {address, port, weight, activeConns, inactiveConns, scheduledConns}:
// scheduledConns is the connections IPVS sent to it since it was added
// (its 64-bit stats), null where the kernel sends no such stats.
Napi::Value Dests(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args(info, "ipvsDests");
  Service svc = ServiceArgs(args, "ipvsDests");
  Napi::Array result = Napi::Array::New(env);
  nlmsghdr* nlh = Begin(env, IPVS_CMD_GET_DEST, 0);
  PutService(nlh, svc, nullptr);
  Connect(env).socket->Dump(env, nlh, "list real servers of", "IPVS service " + ServiceText(args), [&](const nlmsghdr* reply) {
    auto a = ReplyNest(reply, IPVS_CMD_ATTR_DEST, IPVS_DEST_ATTR_MAX);
    if (a.empty() || !a[IPVS_DEST_ATTR_ADDR] || !a[IPVS_DEST_ATTR_PORT]) return;
    auto u32 = [&](int type) { return a[type] ? mnl_attr_get_u32(a[type]) : 0u; };
    Napi::Object dest = Napi::Object::New(env);
    int af = a[IPVS_DEST_ATTR_ADDR_FAMILY] ? mnl_attr_get_u16(a[IPVS_DEST_ATTR_ADDR_FAMILY]) : svc.address.af;
    dest.Set("address", FormatAddress(af, mnl_attr_get_payload(a[IPVS_DEST_ATTR_ADDR])));
    dest.Set("port", ntohs(mnl_attr_get_u16(a[IPVS_DEST_ATTR_PORT])));
    dest.Set("weight", u32(IPVS_DEST_ATTR_WEIGHT));
    dest.Set("activeConns", u32(IPVS_DEST_ATTR_ACTIVE_CONNS));
    dest.Set("inactiveConns", u32(IPVS_DEST_ATTR_INACT_CONNS));
    auto stats = a[IPVS_DEST_ATTR_STATS64] ? ParseNested(a[IPVS_DEST_ATTR_STATS64], IPVS_STATS_ATTR_MAX) : std::vector<const nlattr*>();
    // Without 64-bit stats (kernels before 4.1), null.
    auto u64 = [&](std::initializer_list<int> types) -> Napi::Value {
      uint64_t sum = 0;
      for (int type : types) {
        if (stats.empty() || !stats[type]) return env.Null();
        sum += mnl_attr_get_u64(stats[type]);
      }
      return Napi::Number::New(env, static_cast<double>(sum));
    };
    dest.Set("scheduledConns", u64({IPVS_STATS_ATTR_CONNS}));
    // Both directions: with masquerading, replies pass through IPVS too.
    dest.Set("packets", u64({IPVS_STATS_ATTR_INPKTS, IPVS_STATS_ATTR_OUTPKTS}));
    dest.Set("bytes", u64({IPVS_STATS_ATTR_INBYTES, IPVS_STATS_ATTR_OUTBYTES}));
    result.Set(result.Length(), dest);
  });
  return result;
}

}  // namespace

void ExportIpvs(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "ipvsServices", Services);
  Export(env, exports, "ipvsDests", Dests);
  Export(env, exports, "ipvsApply", Apply);
  Export(env, exports, "ipvsSetTimeouts", SetTimeouts);
}
