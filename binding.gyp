{
  "targets": [
    {
      "target_name": "cmfuse3",
      "sources": ["native/cmfuse3.c"],
      "cflags": [
        "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fvisibility=hidden",
        "<!@(pkg-config --cflags fuse3)",
        "<!@(node -p \"process.env.CMFUSE3_ASAN ? '-fsanitize=address -fno-omit-frame-pointer -g -O1' : ''\")"
      ],
      "ldflags": ["<!@(node -p \"process.env.CMFUSE3_ASAN ? '-fsanitize=address' : ''\")"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
