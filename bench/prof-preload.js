// Preloaded into the plugin with --cpu-prof (bench --cpu-prof DIR): the engine stops a plugin with
// SIGTERM, which would end node without writing the profile; exiting normally writes it.
process.on("SIGTERM", () => process.exit(0));
