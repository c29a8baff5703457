# node-gyp build of the same addon as native/CMakeLists.txt (the main build,
# through cmake-js). Both produce build/Release/kube_lb_native.node.
{
  "targets": [
    {
      "target_name": "kube_lb_native",
      "sources": [
        "native/addon.cc",
        "native/args.cc",
        "native/bpf_object.cc",
        "native/btf.cc",
        "native/cgroup.cc",
        "native/errors.cc",
        "native/fds.cc",
        "native/ipset.cc",
        "native/ipvs.cc",
        "native/ipvs_link.cc",
        "native/ipvs_netlink.cc",
        "native/iter.cc",
        "native/libbpf_log.cc",
        "native/maps.cc",
        "native/netns.cc",
        "native/progs.cc",
        "native/tc.cc",
        "native/xdp.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["<!@(pkg-config --cflags libbpf libelf zlib libmnl)", "-Wall", "-Wextra"],
      "libraries": ["<!@(pkg-config --libs libbpf libelf zlib libmnl)"]
    }
  ]
}
