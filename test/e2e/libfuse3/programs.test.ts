// test/e2e/programs.test.ts again, mounted through the libfuse3 backend (the e2e helpers pin
// fuse-native unless CLOUDMOUNT_TEST_BACKEND says otherwise; the mount child inherits it).
process.env.CLOUDMOUNT_TEST_BACKEND = 'libfuse3';
await import('../programs.test.js');
