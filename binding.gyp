{
  "targets": [
    {
      "target_name": "cmfuse3",
      "sources": ["native/cmfuse3.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fvisibility=hidden", "<!@(pkg-config --cflags fuse3)"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "conditions": [
        ["asan == 1", {
          "cflags": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ],
  "variables": { "asan%": 0 }
}
