// test/e2e/concurrency.test.ts through libfuse3 with reader threads (-o fuse_reader=threads)
// instead of the default poll reader: concurrent writers, appenders and renames on both services.
process.env.CLOUDMOUNT_TEST_BACKEND = 'libfuse3';
process.env.CLOUDMOUNT_TEST_FUSE_READER = 'threads';
await import('../concurrency.test.js');
