extension FileSystem {
    /// mkdir -p whose result survives a power cut: every directory it creates is made
    /// durable by syncing its parent, as a new name is durable only once its directory is.
    public func createDirectoriesDurably(_ path: String, permissions: UInt32 = 0o700) throws {
        if isDirectory(path) { return }
        let parent = Paths.dirname(path)
        if parent != path && !parent.isEmpty && !isDirectory(parent) {
            try createDirectoriesDurably(parent, permissions: permissions)
        }
        try createDirectories(path, permissions: permissions)
        if parent != path && !parent.isEmpty { try syncDirectory(parent) }
    }
}
