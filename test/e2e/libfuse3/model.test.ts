// test/e2e/model.test.ts again, mounted through the libfuse3 backend (the e2e helpers pin
// fuse-native unless CLOUDMOUNT_TEST_BACKEND says otherwise; the mount child inherits it).
// One random sequence per service instead of two keeps the suite's time in bounds; set
// CLOUDMOUNT_MODEL_RUNS (and _SEED) to run more or to replay.
process.env.CLOUDMOUNT_TEST_BACKEND = 'libfuse3';
process.env.CLOUDMOUNT_MODEL_RUNS ??= '1';
await import('../model.test.js');
