// test/e2e/readahead.test.ts's kernel page-cache case again, mounted through the libfuse3 backend,
// which takes keep_cache per open from us and is told of server changes (notify_inval_inode): a
// replacement of the same size in the same second must be seen at the next open here.
process.env.CLOUDMOUNT_TEST_BACKEND = 'libfuse3';
await import('../readahead.test.js');
