"""The provider framework: the contract (``types``), the cty codec, planning, the tfplugin6
server and the go-plugin plumbing. Import submodules directly; this package imports nothing."""
