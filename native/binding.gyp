{
  "targets": [
    {
      "target_name": "execgate_native",
      "sources": ["src/execgate_native.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": ["-Wl,-z,relro,-z,now"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
