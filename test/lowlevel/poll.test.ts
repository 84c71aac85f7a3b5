// test/lowlevel/lowlevel.test.ts again with reader 'poll': the JS thread reads /dev/fuse itself and
// spins between requests (the drive's default; lowlevel.test.ts runs the binding's default, reader threads).
process.env.CMLL_READER = 'poll';
await import('./lowlevel.test.js');
