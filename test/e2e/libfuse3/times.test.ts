// test/e2e/times.test.ts again, mounted through the libfuse3 backend, where utimensat's two
// times arrive apart: plain `rsync -a` and `touch -m -d` are tested here, not on fuse-native.
process.env.CLOUDMOUNT_TEST_BACKEND = 'libfuse3';
await import('../times.test.js');
